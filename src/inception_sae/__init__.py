"""inception-sae: sparse autoencoders on InceptionV1 (inception5h), end to end."""

from ._version import __version__
from .data.store import ActivationStore
from .models import InceptionV1, WeightsError, layer_info, load_model
from .sae import TopKSAE

__all__ = ["ActivationStore", "InceptionV1", "TopKSAE", "WeightsError", "__version__", "layer_info", "load_model"]
