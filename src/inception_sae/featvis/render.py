"""Optimise images for an objective: ``render`` only optimises and returns arrays.

One call renders a whole batch, image ``i`` with its own seed (its own
parameter init and its own stream of random transforms) and, through
per-image objectives, its own feature. Adam is element-wise and the loss is a
sum of per-image scores, so without a coupling term (diversity) an image does
not depend on its batch neighbours beyond floating-point noise of batched
convolutions. Saving to disk is :func:`save_png`, kept apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch import Generator, Tensor

from ..errors import UserError
from ..fsio import atomic_save_image
from ..settings import Settings
from .objectives import Objective
from .param import ImageParam, ParamConfig
from .transforms import Resize, Transform, standard_transforms

if TYPE_CHECKING:
    from ..models.inception_v1 import InceptionV1

#: Offset between a seed's parameter stream and its transform stream (golden-ratio constant).
TRANSFORM_STREAM = 0x9E3779B97F4A7C15 % (1 << 63)


@dataclass(frozen=True, kw_only=True)
class RenderSettings(Settings):
    """Optimisation settings (Lucid/Lucent defaults): what a config file and the flags set."""

    steps: int = 512
    """Adam steps (Lucent's thresholds=(512,))"""
    lr: float = 0.05
    """Adam learning rate"""
    param: ParamConfig = field(default_factory=ParamConfig)
    """image parameterisation and canvas size"""
    model_size: int = 224
    """images are resized (bilinear) to this before the model"""
    redirected_relu: bool = False
    """Lucid's redirected-ReLU gradients during optimisation"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps < 0:
            raise UserError(f"steps must be >= 0, got {self.steps}")
        if self.lr <= 0:
            raise UserError(f"lr must be > 0, got {self.lr}")
        if self.model_size < 16:
            raise UserError(f"model_size must be >= 16, got {self.model_size}")


@dataclass(frozen=True, kw_only=True)
class RenderConfig(RenderSettings):
    """Optimisation settings and the random robustness transforms (code, not settings)."""

    transforms: Transform = field(default_factory=standard_transforms)
    """random robustness transforms"""


class RenderResult(NamedTuple):
    """What ``render`` returns."""

    images: np.ndarray  #: (B, H, W, 3) float32 in [0, 1]
    curve: np.ndarray  #: (steps, B) per-image objective at each step (under that step's transforms)
    final: np.ndarray  #: (B,) per-image objective of the finished, untransformed image

    def uint8(self) -> np.ndarray:
        """Images as (B, H, W, 3) uint8."""
        return to_uint8(self.images)


def transform_generators(seeds: Sequence[int]) -> list[Generator]:
    """One CPU generator per image for its random transforms, from its seed only."""
    return [torch.Generator().manual_seed((int(s) + TRANSFORM_STREAM) % (1 << 63)) for s in seeds]


def _redirect_state(model: torch.nn.Module) -> bool:
    """Whether the model's redirected ReLU is currently on (to restore it afterwards)."""
    return any(getattr(m, "redirect", False) for m in model.modules())


def _scores(model: InceptionV1, objective: Objective, x: Tensor) -> Tensor:
    """Per-image objective (B,) for model-ready images, stopping at the needed layers."""
    scores = objective(model.capture(x, list(objective.layers)))
    if scores.shape != (x.shape[0],):
        raise ValueError(f"objective {objective.description!r} returned shape {tuple(scores.shape)}, want (B,)")
    return scores


def render(
    model: InceptionV1,
    objective: Objective,
    seeds: Sequence[int],
    config: RenderConfig | None = None,
    *,
    device: str | torch.device = "cpu",
    on_step: Callable[[int], None] | None = None,
    score: Objective | None = None,
    resume: dict[str, Tensor] | None = None,
    on_state: Callable[[int, Callable[[], dict[str, Tensor]]], None] | None = None,
) -> RenderResult:
    """Optimise one image per seed to maximise ``objective`` (per image).

    ``model`` must expose ``capture(x, layers)`` (``InceptionV1``): the forward
    pass stops at the objective's deepest layer. Redirected ReLU (if asked for)
    is switched on only for the optimisation and restored in ``finally``; no
    hooks are installed. ``on_step(step)`` is called after each step.
    ``score`` is the objective reported as ``final`` (default: ``objective``;
    e.g. the unit objective without a diversity term).

    ``on_state(steps_done, state)`` is called after each step with a function that returns the whole
    optimisation state (parameters, Adam moments, transform generators, curve); passing such a state back
    as ``resume`` continues from it and ends with the same images as an uninterrupted run.
    """
    config = config or RenderConfig()
    if not seeds:
        raise ValueError("render needs at least one seed")
    image = ImageParam(seeds, config.param, device=str(device))
    gens = transform_generators(seeds)
    resize = Resize(config.model_size)
    opt = torch.optim.Adam(image.parameters(), lr=config.lr)
    curve = torch.empty(config.steps, len(seeds))
    first = 0 if resume is None else restore_state(resume, image, opt, gens, curve)

    def state() -> dict[str, Tensor]:
        return capture_state(step + 1, image, opt, gens, curve)

    previous = _redirect_state(model)
    try:
        model.set_redirected_relu(config.redirected_relu)
        for step in range(first, config.steps):
            opt.zero_grad(set_to_none=True)
            scores = _scores(model, objective, resize(config.transforms(image(), gens), gens))
            (-scores.sum()).backward()
            opt.step()
            curve[step] = scores.detach().cpu()
            if on_state is not None:
                on_state(step + 1, state)
            if on_step is not None:
                on_step(step)
        model.set_redirected_relu(False)
        with torch.no_grad():
            final_images = image()
            final = _scores(model, score or objective, resize(final_images, gens))
    finally:
        model.set_redirected_relu(previous)
    return RenderResult(
        images=final_images.permute(0, 2, 3, 1).cpu().numpy().astype(np.float32),
        curve=curve.numpy(),
        final=final.cpu().numpy(),
    )


def capture_state(steps_done: int, image, opt, gens, curve: Tensor) -> dict[str, Tensor]:
    """Everything :func:`render` needs to continue after ``steps_done`` steps, as CPU tensors."""
    out = {"steps_done": torch.tensor(steps_done), "curve": curve[:steps_done].clone()}
    out.update({f"param/{k}": v.detach().cpu().clone() for k, v in image.state_dict().items()})
    for i, g in enumerate(gens):
        out[f"gen/{i}"] = g.get_state()
    for pid, st in opt.state_dict()["state"].items():
        out.update(
            {f"adam/{pid}/{k}": (v if torch.is_tensor(v) else torch.tensor(v)).cpu().clone() for k, v in st.items()}
        )
    return out


def restore_state(state: dict[str, Tensor], image, opt, gens, curve: Tensor) -> int:
    """Load a :func:`capture_state` dict into a fresh optimisation; returns the steps already done."""
    steps = int(state["steps_done"])
    device = next(image.parameters()).device
    image.load_state_dict({k[6:]: v.to(device) for k, v in state.items() if k.startswith("param/")})
    for i, g in enumerate(gens):
        g.set_state(state[f"gen/{i}"])
    adam: dict[int, dict[str, Tensor]] = {}
    for k, v in state.items():
        if k.startswith("adam/"):
            pid, name = k[5:].split("/", 1)
            adam.setdefault(int(pid), {})[name] = v if name == "step" else v.to(device)
    opt.load_state_dict({"state": adam, "param_groups": opt.state_dict()["param_groups"]})
    curve[:steps] = state["curve"]
    return steps


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8, rounding to nearest."""
    return np.clip(np.rint(np.asarray(images) * 255.0), 0, 255).astype(np.uint8)


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write one (H, W, 3) image (float in [0, 1] or uint8) as PNG, atomically."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = image if image.dtype == np.uint8 else to_uint8(image)
    atomic_save_image(path, Image.fromarray(arr, mode="RGB"), format="PNG")
    return path
