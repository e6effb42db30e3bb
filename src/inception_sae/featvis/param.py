"""Image parameterisations for feature visualisation (Lucid/Lucent recipe).

An image is a function of learnable parameters: ``ImageParam()`` returns a
batch of RGB images in [0, 1], shape (B, 3, H, W). Two spaces are offered:

- **Fourier** (default): the parameters are the real and imaginary parts of
  each colour channel's 2-D rFFT, scaled per frequency by
  ``1 / max(|f|, 1 / max(H, W)) ** decay`` (Olah et al. 2017, "Feature
  Visualization", Preconditioning) so that Adam's steps are roughly whitened
  for natural-image statistics.
- **Pixel**: the parameters are the (pre-sigmoid) pixels themselves.

Either way the three channels are then mixed by the square root of ImageNet's
colour correlation (decorrelated colour) and squashed to [0, 1] by a sigmoid.

Every image in the batch is initialised from its own ``torch.Generator`` seeded
with its own seed, so an image never depends on its batch neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import UserError

#: Square root of ImageNet's RGB colour correlation (Lucid's ``color_correlation_svd_sqrt``).
COLOR_CORRELATION_SVD_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float64
)
#: Lucid normalises by the largest column norm (0.46195...), so no channel is amplified.
MAX_NORM_SVD_SQRT = float(COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max())
COLOR_MATRIX = (COLOR_CORRELATION_SVD_SQRT / MAX_NORM_SVD_SQRT).float()
#: Parameters start as N(0, INIT_STD^2), as in Lucid/Lucent.
INIT_STD = 0.01
#: Lucent divides the Fourier image by 4 after the inverse FFT.
FOURIER_OUTPUT_SCALE = 4.0


def decorrelate_colors(x: Tensor) -> Tensor:
    """Mix decorrelated channels into RGB: (B, 3, H, W) -> (B, 3, H, W).

    Per pixel ``rgb = M @ c`` with ``M = COLOR_MATRIX``, i.e. Lucid's
    ``t_flat @ color_correlation_normalized.T`` on channel-last data.
    """
    m = COLOR_MATRIX.to(device=x.device, dtype=x.dtype)
    return torch.einsum("ij,bjhw->bihw", m, x)


def correlate_colors(x: Tensor) -> Tensor:
    """Inverse of :func:`decorrelate_colors` (RGB -> decorrelated channels)."""
    m_inv = torch.linalg.inv(COLOR_MATRIX.double()).to(device=x.device, dtype=x.dtype)
    return torch.einsum("ij,bjhw->bihw", m_inv, x)


def rfft2d_freqs(h: int, w: int) -> Tensor:
    """|f| on the rFFT grid, (H, W // 2 + 1), in cycles per pixel."""
    fy = torch.fft.fftfreq(h)[:, None]  # (H, 1)
    fx = torch.fft.rfftfreq(w)[None, :]  # (1, W//2+1)
    return torch.sqrt(fx * fx + fy * fy)


def fourier_scale(h: int, w: int, decay: float = 1.0) -> Tensor:
    """Per-frequency scale ``1 / max(|f|, 1 / max(h, w)) ** decay``, (H, W // 2 + 1).

    ``decay = 1`` is Lucid's default (a 1/f amplitude spectrum, i.e. power
    falling as 1/f^2 as in natural images); Horama uses 1.5.
    """
    freqs = rfft2d_freqs(h, w)
    return 1.0 / freqs.clamp(min=1.0 / max(h, w)) ** decay


def seeded_normal(shape: Sequence[int], seeds: Sequence[int], std: float = INIT_STD) -> Tensor:
    """(len(seeds), *shape) on the CPU; row i drawn from a generator seeded with seeds[i]."""
    rows = []
    for seed in seeds:
        g = torch.Generator().manual_seed(int(seed))
        rows.append(torch.randn(*shape, generator=g) * std)
    return torch.stack(rows)


@dataclass(frozen=True)
class ParamConfig:
    """How images are parameterised."""

    size: int = 128
    """canvas height and width in pixels"""
    fourier: bool = True
    """Fourier (True) or pixel (False) parameters"""
    decay: float = 1.0
    """spectrum decay exponent of the Fourier scale"""
    decorrelate: bool = True
    """mix channels with the colour-correlation matrix"""
    height: int | None = None
    """canvas height when not square (default: ``size``)"""

    def __post_init__(self) -> None:
        if self.size < 2 or (self.height is not None and self.height < 2):
            raise UserError(f"canvas must be at least 2x2 pixels, got {self.shape}")
        if self.decay < 0:
            raise UserError(f"decay must be >= 0, got {self.decay}")

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the canvas."""
        return (self.height or self.size, self.size)


class ImageParam(torch.nn.Module):
    """A batch of parameterised images; ``module()`` -> (B, 3, H, W) in [0, 1]."""

    scale: Tensor  #: (H, W // 2 + 1) buffer of the Fourier parameterisation's per-frequency scale

    def __init__(self, seeds: Sequence[int], config: ParamConfig = ParamConfig(), device: str = "cpu") -> None:
        super().__init__()
        self.config = config
        h, w = config.shape
        if config.fourier:
            # (B, 3, H, W//2+1, 2): real and imaginary parts
            init = seeded_normal((3, h, w // 2 + 1, 2), seeds)
            self.register_buffer("scale", fourier_scale(h, w, config.decay).to(device))
        else:
            init = seeded_normal((3, h, w), seeds)  # (B, 3, H, W)
        self.params = torch.nn.Parameter(init.to(device))

    def raw(self) -> Tensor:
        """Pre-sigmoid image in decorrelated colour space, (B, 3, H, W)."""
        h, w = self.config.shape
        if not self.config.fourier:
            return self.params
        spectrum = torch.view_as_complex(self.params) * self.scale  # (B, 3, H, W//2+1)
        return torch.fft.irfft2(spectrum, s=(h, w), norm="ortho") / FOURIER_OUTPUT_SCALE

    def forward(self) -> Tensor:
        """Images (B, 3, H, W) in [0, 1]."""
        x = self.raw()
        if self.config.decorrelate:
            x = decorrelate_colors(x)
        return torch.sigmoid(x)
