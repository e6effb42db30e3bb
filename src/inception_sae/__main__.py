"""``python -m inception_sae`` (also what ``torchrun -m inception_sae`` runs)."""

import sys

from .cli import main

sys.exit(main())
