"""The typed configuration of ``inception-sae run``: one section per stage, read from YAML or TOML.

Each section maps one-to-one onto a stage's own config dataclass: its keys are
exactly that dataclass's fields, minus the few that ``run`` fills in itself
(paths, the layer, weights/seed/device from the top level; see
:data:`RUN_SET`). Unknown keys are a one-line error naming the valid ones.
Nested dataclasses (``featvis.render.param``) are nested mappings.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError


@dataclass(frozen=True)
class SAESpec:
    """Shape of the SAE trained per layer (becomes an ``SAEConfig`` once the layer's width is known)."""

    k: int = 32  #: active latents per input
    expansion: float = 16.0  #: latents = expansion x d (ignored when ``latents`` is set)
    latents: int | None = None  #: explicit latent count
    tie: str = "init"  #: "init" (Gao: tied init, trained freely) or "full" (decoder = encoder^T)
    seed: int = 0  #: SAE initialisation seed


@dataclass(frozen=True)
class EvalSpec:
    """Evaluation of each trained SAE (written to ``RUN/<layer>/eval.json``)."""

    #: store vectors for FVU, L0, dead/dense: the store's tail (at most 20%, cut at an image boundary), which
    #: training therefore never reads (``training.held_out_rows`` in the SAE's cfg.json)
    max_vectors: int = 65536
    max_images: int = 64  #: images for splice-back, seeded and spread over the classes (0: skip splice-back)
    batch_size: int = 16  #: images per splice-back batch


@dataclass(frozen=True)
class FeatvisSpec:
    """Which features to render per layer; the other keys are ``FeatvisJob``'s."""

    features: str = "top:16"  #: "top:N" (the N most frequent live features per the analysis) or ids, e.g. "0-15"
    objective: str = "encoder"  #: FeatvisJob.objective
    at: str = "center"  #: FeatvisJob.at
    diversity: int = 1  #: FeatvisJob.diversity
    diversity_weight: float = 1e2  #: FeatvisJob.diversity_weight
    cossim_pow: float = 1.0  #: FeatvisJob.cossim_pow
    batch_size: int = 16  #: FeatvisJob.batch_size
    render: dict[str, Any] = field(default_factory=dict)  #: RenderConfig fields; ``param``: ParamConfig fields


#: Stage-config fields that ``run`` sets itself (from ``--images``, ``--layer``, ``--out`` and the top level).
RUN_SET: dict[str, tuple[str, ...]] = {
    "harvest": ("images", "layer", "out", "weights", "seed", "device", "progress"),
    "train": ("device", "progress"),
    "sae": (),
    "eval": (),
    "analyze": ("sae", "images", "out", "weights", "seed", "device"),
    "featvis": (),
    "site": ("analyses", "out", "featvis", "circuits", "sae", "eval_report"),
    "circuits": ("upstream", "downstream", "out", "images", "analysis", "weights", "seed", "device"),
}
#: Where ``run`` departs from a stage dataclass's default (shown by ``--print-config``).
RUN_DEFAULTS: dict[str, dict[str, Any]] = {
    "train": {"checkpoint_every": 1000},  # the `train` command's default: a SIGKILLed run loses < 1000 steps
}
#: Top-level keys (everything else is a section).
TOP_KEYS = ("layers", "images", "analysis_images", "out", "weights", "seed", "device")


def section_classes() -> dict[str, type]:
    """Section name -> the dataclass whose fields it holds (imported lazily: nothing at import)."""
    from ..analysis.config import AnalyzeConfig
    from ..circuits.config import CircuitsConfig
    from ..data.harvest import HarvestConfig
    from ..sae.train import TrainConfig
    from ..site.config import SiteConfig

    return {"harvest": HarvestConfig, "train": TrainConfig, "sae": SAESpec, "eval": EvalSpec,
            "analyze": AnalyzeConfig, "featvis": FeatvisSpec, "site": SiteConfig,
            "circuits": CircuitsConfig}  # fmt: skip


@dataclass(frozen=True)
class RunConfig:
    """The whole run: top-level inputs plus one mapping per stage (keys = that stage's config fields)."""

    layers: tuple[str, ...] = ()  #: layers, in network order; circuits run between consecutive ones
    images: Path | None = None  #: image folder (recursive) or .txt list harvested for training
    analysis_images: Path | None = None  #: images for eval, analyze and circuits (default: ``images``)
    out: Path | None = None  #: run folder
    weights: str | None = None  #: inception5h.pth path, "random" (seeded, untrained), or None for the cached file
    seed: int = 0  #: seed of random weights and of every stage's random choices
    device: str = "cpu"  #: torch device for every stage
    harvest: dict[str, Any] = field(default_factory=dict)  #: HarvestConfig fields
    train: dict[str, Any] = field(default_factory=dict)  #: TrainConfig fields
    sae: dict[str, Any] = field(default_factory=dict)  #: SAESpec fields
    eval: dict[str, Any] = field(default_factory=dict)  #: EvalSpec fields
    analyze: dict[str, Any] = field(default_factory=dict)  #: AnalyzeConfig fields
    featvis: dict[str, Any] = field(default_factory=dict)  #: FeatvisSpec fields (+ nested render/param)
    site: dict[str, Any] = field(default_factory=dict)  #: SiteConfig fields
    circuits: dict[str, Any] = field(default_factory=dict)  #: CircuitsConfig fields

    def __post_init__(self) -> None:
        classes = section_classes()
        for name, cls in classes.items():
            check_keys(getattr(self, name), cls, name, RUN_SET[name])
        render = self.featvis.get("render", {})
        if render:
            from ..featvis.render import RenderConfig

            check_keys(render, RenderConfig, "featvis.render", ("transforms",))
            from ..featvis.param import ParamConfig

            check_keys(render.get("param", {}), ParamConfig, "featvis.render.param", ())
        if len(set(self.layers)) != len(self.layers):
            raise UserError(f"a layer is given twice: {list(self.layers)}")

    def section(self, name: str) -> dict[str, Any]:
        """A section with every field filled in (file values over the dataclass defaults)."""
        base = defaults(section_classes()[name], RUN_SET[name])
        return {**base, **RUN_DEFAULTS.get(name, {}), **getattr(self, name)}

    def effective(self) -> dict[str, Any]:
        """The full config as plain data (what ``--print-config`` shows and ``RUN/config.yaml`` holds)."""
        top = {k: getattr(self, k) for k in TOP_KEYS}
        top["layers"] = list(self.layers)
        top = {k: str(v) if isinstance(v, Path) else v for k, v in top.items()}
        return plain({**top, **{name: self.section(name) for name in section_classes()}})


def check_keys(values: Any, cls: type, name: str, excluded: tuple[str, ...]) -> None:
    """One-line error on a non-mapping section or a key that is not a field of ``cls``."""
    if not isinstance(values, dict):
        raise UserError(f"config section '{name}' must be a mapping, got {type(values).__name__}")
    valid = [f.name for f in dataclasses.fields(cls) if f.name not in excluded]
    for key in values:
        if key in excluded:
            raise UserError(f"{name}.{key} is set by `inception-sae run` itself (from the top level or the flags)")
        if key not in valid:
            raise UserError(f"unknown key {name}.{key}; valid keys: {', '.join(valid)}")
    check_types(values, cls, name)


def check_types(values: dict[str, Any], cls: type, name: str) -> None:
    """One-line error when a value's type differs from its field's default (int, float, bool, str)."""
    for f in dataclasses.fields(cls):
        if f.name not in values or values[f.name] is None or f.default in (None, dataclasses.MISSING):
            continue
        want, got = type(f.default), values[f.name]
        if want not in (int, float, bool, str):
            continue
        ok = isinstance(got, bool) if want is bool else (not isinstance(got, bool) and isinstance(got, want))
        if want is float and isinstance(got, int) and not isinstance(got, bool):
            ok = True
        if not ok:
            raise UserError(f"{name}.{f.name} must be of type {want.__name__}, got {got!r}")


def defaults(cls: type, excluded: tuple[str, ...]) -> dict[str, Any]:
    """The dataclass's default for every field not in ``excluded`` (None where it has none)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in excluded:
            continue
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
            out[f.name] = None if dataclasses.is_dataclass(value) else value
        else:
            out[f.name] = None
    return out


def plain(x: Any) -> Any:
    """Paths -> str, tuples -> lists, recursively (YAML/JSON-safe)."""
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return str(x) if isinstance(x, Path) else x


def read_file(path: Path) -> dict[str, Any]:
    """A YAML (.yaml/.yml) or TOML (.toml) file as a mapping; one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            import tomllib  # Python >= 3.11

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except Exception as e:  # yaml/toml parse errors carry positions; keep them on one line
        raise UserError(f"cannot parse {path}: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping of sections, got {type(data).__name__}")
    return data


class SetValue(str):
    """A command-line override: the text as typed, plus the YAML scalar it parses to."""

    parsed: Any

    def __new__(cls, text: str, parsed: Any) -> SetValue:
        obj = super().__new__(cls, text)
        obj.parsed = parsed
        return obj


def _resolve_override(path: list[str], value: Any) -> Any:
    """A :class:`SetValue` becomes its text where the field's default is a string, else its parsed value."""
    if not isinstance(value, SetValue):
        return value
    *parents, last = path
    cls = RunConfig if not parents else section_classes().get(parents[0]) if len(parents) == 1 else None
    fields = {f.name: f for f in dataclasses.fields(cls)} if cls is not None else {}
    if last in fields and isinstance(fields[last].default, str):
        return str(value)
    return value.parsed


def build(file_data: dict[str, Any], overrides: dict[str, Any]) -> RunConfig:
    """A RunConfig from a file's mapping with ``overrides`` on top.

    Override keys are top-level names or dotted paths (``train.samples``, ``featvis.render.steps``);
    None values are ignored.
    """
    names = [f.name for f in dataclasses.fields(RunConfig)]
    for key in file_data:
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
        node[last] = _resolve_override(key.split("."), value)
    if isinstance(data.get("layers"), str):
        data["layers"] = [data["layers"]]
    data["layers"] = tuple(data.get("layers") or ())
    for key in ("images", "analysis_images", "out"):
        if data.get(key) is not None:
            data[key] = Path(data[key])
    if data.get("weights") is not None:
        data["weights"] = str(data["weights"])
    return RunConfig(**data)


def to_yaml(cfg: RunConfig) -> str:
    """The effective config as YAML (round-trips through :func:`build`)."""
    import yaml

    return yaml.safe_dump(cfg.effective(), sort_keys=False, default_flow_style=False)


def fingerprint(cfg: RunConfig, names: tuple[str, ...], top: tuple[str, ...] = ()) -> str:
    """Canonical JSON of some sections and top-level keys (to compare a run with its earlier config)."""
    eff = cfg.effective()
    return json.dumps({k: eff[k] for k in (*top, *names)}, sort_keys=True)


def stage_kwargs(cfg: RunConfig, name: str) -> dict[str, Any]:
    """The section's explicit values, converted to the field types a stage config expects (tuples, Paths)."""
    cls = section_classes()[name]
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in {**RUN_DEFAULTS.get(name, {}), **getattr(cfg, name)}.items():
        hint = str(hints.get(key, ""))
        if isinstance(value, list) and "tuple" in hint:
            value = tuple(Path(v) if "Path" in hint else v for v in value)
        elif isinstance(value, str) and "Path" in hint:
            value = Path(value)
        out[key] = value
    return out
