"""Typed configuration of ``inception-sae analyze``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, get_args

from ..errors import UserError
from ..models.choice import Model
from ..settings import Settings

LabelSource = Literal["auto", "true", "predicted"]
LABEL_SOURCES: tuple[str, ...] = get_args(LabelSource)


@dataclass(frozen=True, kw_only=True)
class AnalysisSettings(Settings):
    """What an analysis computes and keeps: what ``run``'s ``analyze`` section and the command's flags set."""

    max_images: int | None = None
    """Use only N images: a seeded (``seed``) subset spread evenly over the classes (folder names); None: all."""
    batch_size: int = 32
    """Images per batch."""
    labels: Path | None = None
    """inception5h labels TSV (index, wnid, name); default: environment or cache, else numbered names."""
    input_size: int = 224
    """Side of the centre crop fed to the model (resize short side to 256/224 of it first)."""
    n_top: int = 20
    """Top examples kept per feature."""
    n_intervals: int = 10
    """Equal-width activation intervals from 0 to the max."""
    per_interval: int = 5
    """Examples sampled uniformly per interval."""
    render_top: int = 5
    """Top examples per feature that get a crop and a heatmap file."""
    render_intervals: int = 1
    """Examples per interval that get a crop and a heatmap file."""
    training_examples: bool = True
    """Also keep each feature's examples on the positions the SAE was trained on (per image, its max over the
    harvest rule's positions: own top-N and intervals), and flag every-position examples whose argmax is one of
    those positions; needs the store's rule (SAE cfg.json ``store``)."""
    null_scale: bool = True
    """Run the branch test in data units (each channel's RMS activation over the analysed positions, floored at
    the median live RMS); False: raw decoder units."""
    family: str | None = None
    """A family of features to highlight in the branch figures, with its test beside it (Bozoukov's Figs 5-10):
    comma-separated feature ids (``3,17,40``) or ``label:TEXT`` for every feature whose label contains TEXT
    (case-insensitive). A test only if chosen without looking at branches."""
    logit_effect: bool = True
    """Compute logit effects: exact at mixed5b (cheap); elsewhere a linearisation costing about 1008
    backward passes from the layer (seconds to minutes on CPU)."""
    umap: bool = True
    """Compute a UMAP of decoder vectors (needs umap-learn)."""
    label_source: LabelSource = "auto"
    """'true' (wnid of folders/files), 'predicted' (model top-1), or 'auto': true labels when every image has
    one (class folders ``train/<wnid>/...`` or flat ``<wnid>.jpg``), else predictions."""
    workers: int = 0
    """DataLoader worker processes for image decoding."""
    resume: bool = True
    """Continue from ``out/checkpoint`` when it matches this run's inputs."""
    checkpoint_every_s: float = 300.0
    """Seconds between mid-pass checkpoints (0: only between passes)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_images is not None and self.max_images < 1:
            raise UserError(f"max_images must be >= 1, got {self.max_images}")
        for name in ("batch_size", "n_top", "n_intervals", "per_interval", "input_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        parse_family(self.family)  # a malformed family fails here, before any image is read
        if self.render_top > self.n_top or self.render_intervals > self.per_interval:
            raise UserError("cannot render more examples than are kept")


@dataclass(frozen=True, kw_only=True)
class AnalyzeConfig(AnalysisSettings, Model):
    """Everything one analysis run needs: the settings, the network and the inputs; the CLI builds it, the library
    never mutates it."""

    sae: Path
    """SAE folder (docs/formats.md, "SAE folder": cfg.json + sae_weights.safetensors, cfg has ``layer``)."""
    images: Path
    """Image folder (recursive) or a .txt list of image paths."""
    out: Path
    """Analysis folder to write."""
    eval_report: Path | None = None
    """``eval.json`` of this SAE (``inception-sae eval --report``): its held-out FVU and splice-back agreement
    go into summary.json's ``metrics``, the dashboard's headline (None: training-log numbers only)."""
    harvest_rule: str | None = None
    """The position rule the SAE was trained on, for an SAE folder whose cfg.json records none (and whose
    training store is gone): ``top-norm:N[:SEED]``, ``norm-weighted:N:SEED``, ``uniform:N:SEED``, ``all``, or
    ``none`` (no training-position numbers). None: the SAE folder's own record."""

    def to_dict(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


def parse_family(text: str | None) -> tuple[list[int] | None, str | None]:
    """``family`` as (ids, None), (None, label substring) or (None, None) when not given."""
    if not text:
        return None, None
    if text.startswith("label:"):
        if not text[6:].strip():
            raise UserError("family label: needs a text, e.g. label:dog")
        return None, text[6:]
    try:
        return [int(x) for x in text.split(",") if x.strip()], None
    except ValueError:
        raise UserError(f"family must be feature ids like 3,17,40 or label:TEXT, got {text!r}") from None
