"""`explain IMG --sae SAE`: why the network predicts a class, in SAE features."""

from __future__ import annotations

from pathlib import Path

import typer

from ..display import fmt_num
from ..explain.run import ExplainConfig
from .common import MODEL, Model, out
from .options import Group, stage


def parse_classes(text: str | None) -> list[int] | None:
    from ..errors import UserError

    if not text:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UserError(f"--class {text!r}: give class indices separated by commas, e.g. 208,209") from None


@stage(cfg=Group(ExplainConfig, "explain"), model=MODEL)
def explain(
    image: Path = typer.Argument(..., metavar="IMG", help="Image file (JPEG, PNG...)."),
    sae: Path = typer.Option(..., "--sae", help="SAE folder (its cfg.json names the layer; mixed5b is exact)."),
    out_dir: Path = typer.Option(None, "--out", help="Folder for explain.html/png/json (default: explain-<image>)."),
    classes: str = typer.Option(None, "--class", help="Class indices to explain (default: the top classes)."),
    cfg: ExplainConfig = ExplainConfig(),
    analysis: Path = typer.Option(None, "--analysis", help="Analysis folder of the SAE (feature labels)."),
    site: str = typer.Option(None, "--site", help="Built site (path or URL) to link each feature to."),
    labels: Path = typer.Option(None, "--labels", help="inception5h labels TSV (class names)."),
    resize: int = typer.Option(None, "--resize", help="Short side before the crop (default: the SAE's harvest)."),
    crop: int = typer.Option(None, "--crop", help="Centre-crop side (default: the SAE's harvest)."),
    model: Model = Model(),
) -> None:
    """Split the top class logits of IMG into SAE-feature terms; write a self-contained HTML/PNG report."""
    from ..data.images import decode_image, resize_crop
    from ..data.labels import load_labels
    from ..errors import UserError
    from ..explain.report import write_report
    from ..explain.run import explain_image, feature_labels
    from ..sae.model import TopKSAE
    from ..sae.provenance import harvest_of

    if not image.is_file():
        raise UserError(f"image {image} does not exist")
    from ..data.images import ImageDecodeError

    model_sae = TopKSAE.load(sae, device=model.device)
    pre = harvest_of(model_sae.meta, sae, need=("preprocess",), resize=resize, crop=crop).preprocessing()
    try:
        img = resize_crop(decode_image(image), pre)
    except ImageDecodeError as e:
        raise UserError(f"{image} is not a decodable image ({e.reason})") from e
    net = model.load()
    layer = model_sae.layer
    if layer and net.layer_info(layer).channels != model_sae.d_in:
        raise UserError(f"the SAE expects d_in={model_sae.d_in} but {layer} has {net.layer_info(layer).channels}")
    base = (site.rstrip("/") + "/index.html") if site and not site.endswith(".html") else site
    link = (lambda i: f"{base}#/{layer}/f/{i}") if site else None
    result = explain_image(net, model_sae, img, classes=parse_classes(classes), cfg=cfg,
                           label=feature_labels(analysis), link=link,
                           names=load_labels(labels))  # fmt: skip
    folder = out_dir or Path(f"explain-{image.stem}")
    files = write_report(folder, result)
    for c in result["classes"]:
        p = c["parts"]
        out.print(f"{c['name']} (class {c['index']}): {c['target_kind']} {fmt_num(c['target'], 4)} = features "
                  f"{fmt_num(p['features'], 4)} + error {fmt_num(p['error'], 4)} + decoder bias "
                  f"{fmt_num(p['decoder_bias'], 4)} + bias {fmt_num(p['bias'], 4)}  "
                  f"(difference {fmt_num(c['residual'], 2)})", soft_wrap=True, highlight=False)  # fmt: skip
    if not result["exact"]:
        out.print(f"[yellow]{result['method']}[/]", soft_wrap=True)
    out.print(f"wrote {', '.join(str(f) for f in files)}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("explain")(explain)
