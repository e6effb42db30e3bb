"""Feature visualisation (Lucid/Lucent recipe): parameterisations, transforms, objectives, render."""

from .objectives import Objective, channel, direction, diversity, neuron, sae_decoder, sae_encoder
from .param import ImageParam, ParamConfig
from .render import RenderConfig, RenderResult, render, save_png

__all__ = [
    "ImageParam",
    "Objective",
    "ParamConfig",
    "RenderConfig",
    "RenderResult",
    "channel",
    "direction",
    "diversity",
    "neuron",
    "render",
    "sae_decoder",
    "sae_encoder",
    "save_png",
]
