"""Image parameterisations: colour (de)correlation, Fourier range and spectrum, per-image seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inception_sae.featvis.param import (
    COLOR_MATRIX,
    ImageParam,
    ParamConfig,
    correlate_colors,
    decorrelate_colors,
    fourier_scale,
)


def test_color_matrix_is_lucids_normalised_matrix():
    raw = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
    assert COLOR_MATRIX.norm(dim=0).max() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(COLOR_MATRIX * 0.46195, raw, atol=1e-4)


def test_decorrelation_round_trips():
    x = torch.randn(2, 3, 5, 7)
    assert torch.allclose(correlate_colors(decorrelate_colors(x)), x, atol=1e-5)
    assert torch.allclose(decorrelate_colors(correlate_colors(x)), x, atol=1e-5)


def test_decorrelation_matches_lucid_channel_last_matmul():
    x = torch.randn(1, 3, 4, 4)
    lucid = (x.permute(0, 2, 3, 1) @ COLOR_MATRIX.T).permute(0, 3, 1, 2)
    assert torch.allclose(decorrelate_colors(x), lucid, atol=1e-6)


@pytest.mark.parametrize("fourier", [True, False])
@pytest.mark.parametrize("shape", [(32, 32), (31, 45)])
def test_images_in_unit_range_with_any_canvas(fourier, shape):
    cfg = ParamConfig(size=shape[1], height=shape[0], fourier=fourier)
    img = ImageParam([0, 1], cfg)
    with torch.no_grad():
        img.params.mul_(1000)  # extreme parameters still give valid images
        x = img()
    assert x.shape == (2, 3, *shape)
    assert x.min() >= 0 and x.max() <= 1


def _spectrum_slope(x: np.ndarray) -> float:
    """Log-log slope of the radially averaged power spectrum of (N, H, W) images."""
    n = x.shape[-1]
    power = (np.abs(np.fft.fft2(x - x.mean(axis=(-2, -1), keepdims=True))) ** 2).mean(axis=0)
    f = np.sqrt(np.fft.fftfreq(n)[:, None] ** 2 + np.fft.fftfreq(n)[None, :] ** 2)
    bins = np.linspace(2 / n, 0.5, 12)
    idx = np.digitize(f, bins)
    fr = np.array([f[idx == i].mean() for i in range(1, len(bins))])
    pw = np.array([power[idx == i].mean() for i in range(1, len(bins))])
    return float(np.polyfit(np.log(fr), np.log(pw), 1)[0])


@pytest.mark.parametrize(("decay", "fourier", "expected"), [(1.0, True, -2.0), (1.5, True, -3.0), (1.0, False, 0.0)])
def test_initial_image_power_spectrum_falls_as_f_to_minus_2_decay(decay, fourier, expected):
    cfg = ParamConfig(size=64, decay=decay, fourier=fourier)
    with torch.no_grad():
        x = ImageParam(list(range(8)), cfg)() - 0.5  # sigmoid is linear near 0.5 at init scale
    slope = _spectrum_slope(x.reshape(-1, 64, 64).numpy().astype(np.float64))
    assert slope == pytest.approx(expected, abs=0.35)


def test_fourier_scale_caps_low_frequencies():
    s = fourier_scale(16, 16, 1.0)
    assert s.shape == (16, 9)
    assert s[0, 0] == pytest.approx(16.0)  # DC clamped at 1 / max(h, w)
    assert s[0, 8] == pytest.approx(2.0)  # Nyquist: 1 / 0.5


def test_each_image_depends_only_on_its_seed():
    cfg = ParamConfig(size=24)
    together = ImageParam([5, 9, 11], cfg)()
    alone = ImageParam([9], cfg)()
    assert torch.equal(together[1], alone[0])
    assert not torch.equal(together[0], together[1])


def test_bad_config_is_rejected():
    with pytest.raises(ValueError):
        ParamConfig(size=1)
    with pytest.raises(ValueError):
        ParamConfig(decay=-1)
