"""Explain a prediction in SAE features: exact logit split on mixed5b, integrated gradients elsewhere."""

from .decompose import ClassSplit, exact_split, gradient_split, image_codes, split_logits
from .run import explain_image

__all__ = ["ClassSplit", "exact_split", "explain_image", "gradient_split", "image_codes", "split_logits"]
