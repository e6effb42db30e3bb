"""Factories for the tests: the one shared place for test data, SAE folders and running the command.

- :mod:`.images`: ``make_images`` (photo-like folders, flat or ImageNet-shaped) and the package's synthetic images;
- :mod:`.sae`: ``make_sae`` (written by the package's own SAE writer) and planted dictionaries;
- :mod:`.cli`: ``run_cli`` (in-process), ``run_cli_process`` (a child process) and the tiny ``run`` settings;
- :mod:`.stores`: small harvest settings and stores read back as sets;
- :mod:`.quality`: labelled stores with planted class directions and SAEs read off them (quality panel);
- :mod:`.site`: analysis / featvis / circuits folders in the stages' formats, for the site tests;
- :mod:`.branch_truth`, :mod:`.concept_truth`, :mod:`.compare`, :mod:`.circuits`: planted ground truth,
  generated outside the statistic under test;
- :mod:`.sae_worker`: a training process for the kill-and-resume and data-parallel tests.

Test modules import from here (or take a ``conftest.py`` fixture), never from one another.
"""

from .cli import CliResult, one_line_error, run_args, run_cli, run_cli_process
from .images import make_images, synthetic_images
from .sae import make_sae, unit_rows

__all__ = ["CliResult", "make_images", "make_sae", "one_line_error", "run_args", "run_cli", "run_cli_process",
           "synthetic_images", "unit_rows"]  # fmt: skip
