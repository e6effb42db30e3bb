"""The typed configuration of ``inception-sae run``: one section per stage, read from YAML or TOML.

Each section is a stage's settings dataclass (``HarvestSettings``...), the class its config subclasses: the
config adds the inputs that ``run`` fills in itself (folders, the layer, and weights/seed/device from the top
level, which are :class:`~inception_sae.models.choice.Model`'s). Unknown keys, values of the wrong type, values
outside a ``Literal`` and values a section's own checks refuse are one-line errors naming the key or section
(:mod:`inception_sae.settings`). Nested dataclasses (``featvis.render.param``) are nested mappings.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..analysis.config import AnalysisSettings, AnalyzeConfig
from ..circuits.config import CircuitsConfig, CircuitsSettings
from ..compare.run import CompareConfig, CompareSettings
from ..data.harvest import HarvestConfig, HarvestSettings
from ..errors import UserError
from ..featvis.run import FeatvisConfig, FeatvisSettings
from ..models.choice import Model
from ..sae.architecture import SAESettings
from ..sae.eval_stage import EvalConfig, EvalSettings
from ..sae.train_config import TrainConfig, TrainSettings
from ..settings import TextValue, convert, from_mapping, plain, type_hints
from ..site.config import SiteConfig, SiteSettings


@dataclass(frozen=True, kw_only=True)
class FeatvisRunSettings(FeatvisSettings):
    """How features are rendered (the FeatvisSettings fields) and which features of each layer (``features``)."""

    features: str = "top:16"
    """``top:N`` (the N most frequent live features per the analysis) or ids, e.g. ``0-15``"""


@dataclass(frozen=True, kw_only=True)
class RunConfig(Model):
    """The whole run: the network (weights, seed, device), the top-level inputs and one typed settings section per
    stage."""

    layers: tuple[str, ...] = ()
    """layers, in network order; circuits run between consecutive ones"""
    images: Path | None = None
    """image folder (recursive) or .txt list harvested for training"""
    analysis_images: Path | None = None
    """images for eval, analyze and circuits (default: ``images``)"""
    out: Path | None = None
    """run folder"""
    harvest: HarvestSettings = field(default_factory=HarvestSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    sae: SAESettings = field(default_factory=SAESettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    analyze: AnalysisSettings = field(default_factory=AnalysisSettings)
    featvis: FeatvisRunSettings = field(default_factory=FeatvisRunSettings)
    circuits: CircuitsSettings = field(default_factory=CircuitsSettings)
    compare: CompareSettings = field(default_factory=CompareSettings)
    site: SiteSettings = field(default_factory=SiteSettings)

    def __post_init__(self) -> None:
        if len(set(self.layers)) != len(self.layers):
            raise UserError(f"a layer is given twice: {list(self.layers)}")

    def effective(self) -> dict[str, Any]:
        """The full config as plain data (what ``--print-config`` shows and ``RUN/config.yaml`` holds)."""
        return plain(self)


#: Top-level keys (everything else is a section).
TOP_KEYS = ("layers", "images", "analysis_images", "out", "weights", "seed", "device")
#: Section -> the stage config whose settings it holds (the other fields are the ones ``run`` sets itself).
STAGE_CONFIGS: dict[str, type] = {"harvest": HarvestConfig, "train": TrainConfig, "eval": EvalConfig,
                                  "analyze": AnalyzeConfig, "featvis": FeatvisConfig, "circuits": CircuitsConfig,
                                  "compare": CompareConfig, "site": SiteConfig}  # fmt: skip
SECTIONS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name not in TOP_KEYS)


def fixed_keys(section: str) -> tuple[str, ...]:
    """Fields of a section's stage config that ``run`` sets itself (refused in the config, with that reason)."""
    cls = STAGE_CONFIGS.get(section)
    if cls is None:
        return ()
    own = {f.name for f in dataclasses.fields(type_hints(RunConfig)[section])}
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in own)


def read_file(path: Path) -> dict[str, Any]:
    """A YAML (.yaml/.yml) or TOML (.toml) file as a mapping; one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            if sys.version_info < (3, 11):
                raise ImportError("TOML needs Python >= 3.11 (tomllib); use a YAML config")
            else:
                import tomllib

                data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except Exception as e:  # yaml/toml parse errors carry positions; keep them on one line
        raise UserError(f"cannot parse {path}: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def build(file_data: dict[str, Any], overrides: dict[str, Any]) -> RunConfig:
    """A RunConfig from a file's mapping with ``overrides`` on top.

    Override keys are top-level names or dotted paths (``train.samples``, ``featvis.render.steps``);
    None values are ignored. A :class:`~inception_sae.settings.TextValue` (``--set``) is read as its text
    where the field is a string, else as the YAML scalar it parses to.
    """
    names = [f.name for f in dataclasses.fields(RunConfig)]
    for key in [*file_data, *(k.split(".")[0] for k, v in overrides.items() if v is not None)]:
        if key not in names:
            raise UserError(f"unknown top-level key {key!r}; valid keys: {', '.join(names)}")
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in file_data.items()}
    for key, value in overrides.items():
        if value is None:
            continue
        *parents, last = key.split(".")
        node = data
        for part in parents:  # nested sections (featvis.render.param.size) are mappings
            node[part] = dict(node.get(part) or {})
            node = node[part]
        node[last] = value
    hints = type_hints(RunConfig)
    sections = {
        name: from_mapping(hints[name], data[name], name, fixed_keys(name)) for name in SECTIONS if name in data
    }
    layers = data.get("layers")
    layers = layers.parsed if isinstance(layers, TextValue) else layers
    data["layers"] = [layers] if isinstance(layers, str) else (layers or [])
    top = {key: convert(data[key], hints[key], key) for key in TOP_KEYS if key in data}
    return RunConfig(**top, **sections)


def to_yaml(cfg: RunConfig) -> str:
    """The effective config as YAML (round-trips through :func:`build`)."""
    import yaml

    return yaml.safe_dump(cfg.effective(), sort_keys=False, default_flow_style=False)


def fingerprint(
    cfg: RunConfig,
    names: tuple[str, ...],
    top: tuple[str, ...] = (),
    leave_out: dict[str, tuple[str, ...]] | None = None,
) -> str:
    """Canonical JSON of some sections and top-level keys (to compare a run with its earlier config).

    ``leave_out`` maps a section to keys of it that do not count (e.g. the cosmetic ones).
    """
    eff, leave_out = cfg.effective(), leave_out or {}
    data = {k: eff[k] for k in top}
    data |= {k: {f: v for f, v in eff[k].items() if f not in leave_out.get(k, ())} for k in names}
    return json.dumps(data, sort_keys=True)
