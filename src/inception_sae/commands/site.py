"""``site build`` and ``site serve``: the static feature dashboard."""

from __future__ import annotations

from pathlib import Path

import typer

from ..site.config import ServeConfig, SiteConfig
from .common import DEVICE, SEED, WEIGHTS, console, deprecated, option, out, pick


def build(
    analysis: list[Path] = typer.Option(..., "--analysis", help="Analysis folder (repeat for several layers)."),
    out_dir: Path = typer.Option(..., "--out", help="Site folder to write (a previous site there is replaced)."),
    featvis: Path = typer.Option(None, "--featvis", help="Featvis folder (<layer>/f/<id>.png ...)."),
    circuits: list[Path] = typer.Option(
        [], "--circuits", help="Circuits folder (neighbours.json / graph.json) or graph file; repeat per layer pair."
    ),
    title: str = option(SiteConfig, "title", "Site title."),
    compare: list[Path] = typer.Option([], "--compare", help="Folder of `inception-sae compare` (repeat per pair)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Build a static, offline site: layer page, one page per feature and neuron, class pages."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn

    from ..site import build_site

    cfg = SiteConfig(tuple(analysis), out_dir, featvis, tuple(circuits), title, compares=tuple(compare))
    columns = (TextColumn("site"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[rate]} features/s"))  # fmt: skip
    with Progress(*columns, console=console, disable=not progress) as bar:
        task = bar.add_task("site", total=None, rate="-")

        def tick(done: int, total: int) -> None:
            elapsed = bar.tasks[0].elapsed or 1e-9
            bar.update(task, completed=done, total=total, rate=f"{done / elapsed:.0f}")

        result = build_site(cfg, progress=tick)
    out.print(
        f"site: {result.out}/index.html  {result.features} features, {result.files} files, "
        f"{result.bytes / 1e6:.1f} MB, {result.seconds:.1f} s",
        soft_wrap=True,
    )


def serve(
    site: Path = typer.Argument(..., help="Built site folder."),
    port: int = option(ServeConfig, "port", "TCP port (0: any free port)."),
    host: str = option(ServeConfig, "host", "Interface; 127.0.0.1 keeps it on this machine."),
    live: bool = option(ServeConfig, "live", "Add the 'try your own image' box (needs --sae).", "--live"),
    sae: Path = typer.Option(None, "--sae", help="SAE folder for the live box."),
    max_upload_mb: float = typer.Option(10.0, "--max-upload-mb", help="Largest accepted upload."),
    weights: str = WEIGHTS,
    seed: int = SEED,
    device: str = DEVICE,
    verbose: bool = typer.Option(False, "--verbose", help="Log every request."),
    request_timeout: float = option(
        ServeConfig, "request_timeout", "Seconds a silent connection is kept before it is closed."
    ),
    timeout: float = deprecated("--timeout", "--request-timeout"),
) -> None:
    """Serve a built site read-only (GET/HEAD; POST only for the live box)."""
    from ..site import make_server
    from .common import warn_if_random

    cfg = ServeConfig(site, host, port, live, sae, weights, seed, device, max(1, int(max_upload_mb * 2**20)),
                      request_timeout=pick(request_timeout, timeout, "--timeout", "--request-timeout"))  # fmt: skip
    server = make_server(cfg, verbose)
    if server.live is not None:
        warn_if_random(server.live.identity)
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]listening on {host}: other machines can reach this site[/]")
    out.print(f"serving {site} at {server.url}  (Ctrl-C to stop)", highlight=False, soft_wrap=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def register(app: typer.Typer) -> None:
    site_app = typer.Typer(help="Static feature dashboard: build it, serve it.", no_args_is_help=True)
    site_app.command("build")(build)
    site_app.command("serve")(serve)
    app.add_typer(site_app, name="site")
