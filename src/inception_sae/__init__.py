"""inception-sae: sparse autoencoders on InceptionV1 (inception5h), end to end."""

from .models import InceptionV1, WeightsError, layer_info, load_model
from .sae import TopKSAE

__version__ = "0.1.0"
__all__ = ["InceptionV1", "TopKSAE", "WeightsError", "__version__", "layer_info", "load_model"]
