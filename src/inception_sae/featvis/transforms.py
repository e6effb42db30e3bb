"""Random image transforms for transformation robustness, in plain torch.

Each transform is called as ``t(x, gens)`` with a batch ``x`` (B, 3, H, W) and
one ``torch.Generator`` per image: every random draw for image ``i`` comes from
``gens[i]``, so an image's sequence of transforms depends only on its own seed
and never on which other images share its batch. Generators live on the CPU
(draws are a few scalars per step), whatever device ``x`` is on.

``standard_transforms()`` is Lucent's default chain: pad 12 (constant 0.5),
jitter 8, scale 0.90-1.10, rotate -10..10 degrees, jitter 4. Unlike Lucent's
scale, ours zooms about the centre and keeps the canvas size (the image is
resized to the model's input size at the end anyway), so a batch always holds
images of one size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Generator, Tensor

#: Lucent's scale choices: 1 + (i - 5) / 50 for i in 0..10, i.e. 0.90 to 1.10.
LUCENT_SCALES = tuple(1 + (i - 5) / 50 for i in range(11))
#: Lucent's rotation choices: -10..10 degrees plus extra weight on 0 (5 more zeros).
LUCENT_ANGLES = tuple(range(-10, 11)) + (0,) * 5
#: Value used for padding and for pixels brought in by rotation / zoom-out.
FILL = 0.5


def _choice(options: Sequence[float], g: Generator) -> float:
    return options[int(torch.randint(len(options), (1,), generator=g))]


class Transform:
    """Base class: ``t(x, gens) -> x'`` for a batch and one generator per image."""

    def __call__(self, x: Tensor, gens: Sequence[Generator]) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = tuple(transforms)

    def __call__(self, x: Tensor, gens: Sequence[Generator]) -> Tensor:
        for t in self.transforms:
            x = t(x, gens)
        return x


class Pad(Transform):
    """Pad every side by ``pad`` pixels of constant ``fill`` (no randomness)."""

    def __init__(self, pad: int, fill: float = FILL) -> None:
        self.pad, self.fill = pad, fill

    def __call__(self, x: Tensor, gens: Sequence[Generator]) -> Tensor:
        return F.pad(x, (self.pad,) * 4, mode="constant", value=self.fill)


class Jitter(Transform):
    """Crop (H - d + 1, W - d + 1) at a random offset in [0, d) per image (Lucent's jitter)."""

    def __init__(self, d: int) -> None:
        self.d = d

    def __call__(self, x: Tensor, gens: Sequence[Generator]) -> Tensor:
        d = self.d
        h, w = x.shape[-2] - d + 1, x.shape[-1] - d + 1
        crops = []
        for i, g in enumerate(gens):
            dy, dx = (int(v) for v in torch.randint(d, (2,), generator=g))
            crops.append(x[i, :, dy : dy + h, dx : dx + w])
        return torch.stack(crops)


def _affine_resample(x: Tensor, theta: Tensor, fill: float) -> Tensor:
    """Resample each image with its own 2x3 affine (output -> input, normalised coords).

    Pixels outside the input become ``fill``: sample ``x - fill`` with zero
    padding, then add ``fill`` back.
    """
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill


class RandomScale(Transform):
    """Zoom each image about its centre by a factor chosen from ``scales``, keeping its size."""

    def __init__(self, scales: Sequence[float] = LUCENT_SCALES, fill: float = FILL) -> None:
        self.scales, self.fill = tuple(scales), fill

    def __call__(self, x: Tensor, gens: Sequence[Generator]) -> Tensor:
        s = torch.tensor([_choice(self.scales, g) for g in gens], dtype=torch.float32)  # (B,)
        theta = torch.zeros(len(gens), 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / s  # zoom in by s: sample a 1/s-sized window
        return _affine_resample(x, theta, self.fill)


class RandomRotate(Transform):
    """Rotate each image about its centre by an angle (degrees) chosen from ``angles``."""

    def __init__(self, angles: Sequence[float] = LUCENT_ANGLES, fill: float = FILL) -> None:
        self.angles, self.fill = tuple(angles), fill

    def __call__(self, x: Tensor, gens: Sequence[Generator]) -> Tensor:
        a = torch.tensor([math.radians(_choice(self.angles, g)) for g in gens], dtype=torch.float32)
        cos, sin = a.cos(), a.sin()
        h, w = x.shape[-2:]
        theta = torch.zeros(len(gens), 2, 3)
        # normalised coordinates are anisotropic for non-square images: rescale by aspect
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
        theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
        return _affine_resample(x, theta, self.fill)


class Resize(Transform):
    """Bilinear resize to ``size`` x ``size`` (e.g. the model's 224 input)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, x: Tensor, gens: Sequence[Generator]) -> Tensor:
        if tuple(x.shape[-2:]) == (self.size, self.size):
            return x
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)


def standard_transforms() -> Compose:
    """Lucent's ``standard_transforms``: pad 12, jitter 8, scale, rotate, jitter 4."""
    return Compose([Pad(12), Jitter(8), RandomScale(), RandomRotate(), Jitter(4)])


def no_transforms() -> Compose:
    """The identity chain (for evaluating a finished image)."""
    return Compose([])
