"""Circuits between SAE features of consecutive layers.

Weight-based connections (exact through the 1x1 branch, "expanded weights"
through the linearised block), data-based attribution and ablation on real
images, their validation against each other, cross-layer branch consistency,
and graph export. See ``run.run_circuits`` for the whole stage.
"""

from .saes import SAEView, dominant_branches, load_sae

__all__ = ["SAEView", "dominant_branches", "load_sae"]
