"""``site build`` and ``site serve``: the static feature dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..settings import values
from ..site.config import ServeConfig, SiteConfig, SiteSettings
from .common import MODEL, Model, console, out
from .options import Group, stage


@stage(settings=Group(SiteSettings, "site"))
def build(
    analysis: list[Path] = typer.Option(..., "--analysis", help="Analysis folder (repeat for several layers)."),
    out_dir: Path = typer.Option(..., "--out", help="Site folder to write (a previous site there is replaced)."),
    featvis: Path = typer.Option(None, "--featvis", help="Featvis folder (<layer>/f/<id>.png ...)."),
    circuits: list[Path] = typer.Option(
        [], "--circuits", help="Circuits folder (neighbours.json / graph.json) or graph file; repeat per layer pair."
    ),
    compare: list[Path] = typer.Option([], "--compare", help="Folder of `inception-sae compare` (repeat per pair)."),
    settings: SiteSettings = SiteSettings(),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Build a static, offline site: layer page, one page per feature and neuron, class pages."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn

    from ..site.build import run

    cfg = SiteConfig(
        analyses=tuple(analysis),
        out=out_dir,
        featvis=featvis,
        circuits=tuple(circuits),
        compares=tuple(compare),
        **values(settings),
    )
    columns = (TextColumn("site"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[rate]} features/s"))  # fmt: skip
    with Progress(*columns, console=console, disable=not progress) as bar:
        task = bar.add_task("site", total=None, rate="-")

        def tick(done: int, total: int) -> None:
            elapsed = bar.tasks[0].elapsed or 1e-9
            bar.update(task, completed=done, total=total, rate=f"{done / elapsed:.0f}")

        result = run(cfg, on_progress=tick)
    out.print(
        f"site: {result.out}/index.html  {result.features} features, {result.files} files, "
        f"{result.bytes / 1e6:.1f} MB, {result.seconds:.1f} s",
        soft_wrap=True,
    )


#: ``site serve``'s options: ServeConfig's fields but the site (an argument), the SAE and the model's, and its
#: byte limit (given in MB)
SERVE = Group(ServeConfig, "serve", skip=("site", "sae", "weights", "seed", "device", "max_upload"), build=False)


@stage(options=SERVE, model=MODEL)
def serve(
    site: Path = typer.Argument(..., help="Built site folder."),
    sae: Path = typer.Option(None, "--sae", help="SAE folder for the live box."),
    max_upload_mb: float = typer.Option(10.0, "--max-upload-mb", help="Largest accepted upload."),
    options: dict[str, Any] | None = None,
    model: Model = Model(),
    verbose: bool = typer.Option(False, "--verbose", help="Log every request."),
) -> None:
    """Serve a built site read-only (GET/HEAD; POST only for the live box)."""
    from ..site import make_server
    from .common import warn_if_random

    cfg = ServeConfig(site, sae=sae, max_upload=max(1, int(max_upload_mb * 2**20)), **values(model), **(options or {}))
    server = make_server(cfg, verbose)
    if server.live is not None:
        warn_if_random(server.live.identity)
    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]listening on {cfg.host}: other machines can reach this site[/]")
    out.print(f"serving {site} at {server.url}  (Ctrl-C to stop)", highlight=False, soft_wrap=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def register(app: typer.Typer) -> None:
    site_app = typer.Typer(
        help="Static feature dashboard: build it, serve it.", no_args_is_help=True, rich_markup_mode=None
    )
    site_app.command("build")(build)
    site_app.command("serve")(serve)
    app.add_typer(site_app, name="site")
