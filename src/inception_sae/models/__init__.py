"""InceptionV1 (inception5h): the network, its layer records and its weights."""

from .inception_v1 import InceptionV1
from .layers import BranchInfo, LayerInfo, layer_info, layer_names
from .weights import WeightsError, load_model

__all__ = ["BranchInfo", "InceptionV1", "LayerInfo", "WeightsError", "layer_info", "layer_names", "load_model"]
