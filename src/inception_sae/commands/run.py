"""`run` (every stage for one or more layers) and `demo` (the whole pipeline at small scale)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..data.harvest import HarvestSettings
from ..errors import UserError
from ..pipeline.config import RunConfig
from ..sae.architecture import SAESettings
from ..sae.train_config import TrainSettings
from .common import console, out, warn_if_random
from .options import Group, stage


def parse_sets(items: list[str]) -> dict:
    """``section.key=value`` strings -> overrides.

    Values parse as YAML scalars (3, 1e-3, true, [1, 2]) except where the field
    is a string: :func:`~inception_sae.pipeline.config.build` then keeps the text
    as typed (``analyze.label_source=true``, ``featvis.features=12``).
    """
    import yaml

    from ..settings import TextValue

    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: use section.key=value, e.g. train.samples=200000")
        try:
            parsed = _number(yaml.safe_load(value))
        except yaml.YAMLError:
            parsed = value
        result[key.strip()] = TextValue(value, parsed)
    return result


def _number(value):
    """YAML reads 1e6 and 2e-4 as strings; make them numbers (integral floats become ints)."""
    if not isinstance(value, str):
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value else number


@stage(top=Group(RunConfig, "run", only=("images", "out", "weights", "seed", "device"), unset=True),
       sae=Group(SAESettings, "sae", only=("k", "expansion"), unset=True),
       train=Group(TrainSettings, "train", only=("samples",), unset=True),
       harvest=Group(HarvestSettings, "harvest", only=("max_images",), unset=True))  # fmt: skip
def run(
    config_arg: Path = typer.Argument(None, metavar="[CONFIG]", help="Config file (YAML or TOML), as --config."),
    config: Path = typer.Option(None, "--config", help="Config file (YAML or TOML); flags override it."),
    layer: list[str] = typer.Option([], "--layer", help="Layer (repeat for several; circuits between consecutive)."),
    top: dict[str, Any] | None = None,
    sae: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    harvest: dict[str, Any] | None = None,
    sets: list[str] = typer.Option([], "--set", help="Any config key: section.key=value (repeatable)."),
    force_stage: list[str] = typer.Option([], "--force-stage", help="Redo this stage and the ones after it."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the effective config (YAML) and exit."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress."),
) -> None:
    """Harvest, train, eval, analyze, featvis (per layer), circuits (between layers) and the site, resumably."""
    from ..pipeline.config import build, read_file, to_yaml
    from ..pipeline.run import run_pipeline

    if config_arg is not None and config is not None and config_arg != config:
        raise UserError("give the config file once (positional or --config)")
    path = config or config_arg
    # flags override the file; --max-images is both harvest's and analyze's
    given = {"": top, "sae.": sae, "train.": train, "harvest.": harvest, "analyze.": harvest}
    flags = {f"{where}{key}": value for where, kw in given.items() for key, value in (kw or {}).items()}
    overrides = {"layers": layer or None, **flags, **parse_sets(sets)}
    cfg = build(read_file(path) if path else {}, overrides)
    if print_config:
        out.print(to_yaml(cfg), end="", highlight=False, soft_wrap=True)
        return
    if cfg.weights and cfg.weights.startswith("random"):
        warn_if_random(f"random:{cfg.seed}")
    try:
        result = run_pipeline(cfg, force=tuple(force_stage), progress=progress, console=console)
    except KeyboardInterrupt:
        console.print("interrupted: rerun the same command to resume")
        raise typer.Exit(130) from None
    finish(result)


def finish(result) -> None:
    """The final lines: where the site is."""
    ran = [s for s in result.stages if s.status == "done"]
    console.print(
        f"run complete: {result.root}  ({len(ran)} stages run in {sum(s.seconds for s in ran):.0f} s, "
        f"{len(result.stages) - len(ran)} skipped as complete)",
        highlight=False,
        soft_wrap=True,
    )
    out.print(f"open {result.site / 'index.html'}  or  inception-sae site serve {result.site}", soft_wrap=True)


def demo(
    out_dir: Path = typer.Option(..., "--out", help="Demo folder (images, run, site)."),
    offline: bool = typer.Option(False, "--offline", help="No network: random weights + procedural images."),
    images: int = typer.Option(None, "--images", help="Number of images (default: 140 offline, 500 online)."),
    size: int = typer.Option(None, "--size", help="Offline image side in pixels."),
    samples: int = typer.Option(None, "--samples", help="SAE training length in vectors."),
    features: int = typer.Option(None, "--features", help="Features visualised."),
    steps: int = typer.Option(None, "--steps", help="Featvis steps per feature."),
    layer: str = typer.Option(None, "--layer", help="Layer (default mixed4a)."),
    sets: list[str] = typer.Option([], "--set", help="Any run config key: section.key=value (repeatable)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress."),
) -> None:
    """The whole pipeline at small scale: online (real weights, Imagenette) or --offline (untrained, synthetic)."""
    from ..pipeline.demo import DemoSettings, run_demo

    opts = DemoSettings(out=out_dir, offline=offline, images=images, size=size, samples=samples,
                        features=features, steps=steps, layer=layer, overrides=parse_sets(sets),
                        progress=progress)  # fmt: skip
    if offline:
        warn_if_random("random:0")
    try:
        result = run_demo(opts)
    except KeyboardInterrupt:
        console.print("interrupted: rerun the same command to resume")
        raise typer.Exit(130) from None
    finish(result)


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(demo)
