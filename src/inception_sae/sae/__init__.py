"""TopK sparse autoencoders: model, sparse kernels, trainer, metrics."""

from .model import SAEConfig, TopKSAE

__all__ = ["SAEConfig", "TopKSAE"]
