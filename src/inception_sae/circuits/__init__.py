"""Circuits between SAE features of consecutive layers.

Weight-based connections (exact through the 1x1 branch, "expanded weights"
through the linearised block), data-based attribution and ablation on real
images, their validation against each other, cross-layer branch consistency,
and graph export. See ``run.run`` for the whole stage.
"""

from ..analysis.branches import dominant_branches

__all__ = ["dominant_branches"]
