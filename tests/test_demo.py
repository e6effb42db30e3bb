"""`inception-sae demo --offline` end to end (no network), its site in a browser, and the online data path."""

from __future__ import annotations

import json
import tarfile
from io import BytesIO
from pathlib import Path

import pytest
from factories import run_cli_process
from PIL import Image

from inception_sae.errors import UserError
from inception_sae.fsio import file_sha256

#: An unroutable address: any download attempt fails at once.
DEAD_URL = "http://127.0.0.1:9/nothing-here"
LAYER = "mixed3b"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The offline demo at even smaller settings than its defaults (16 images at 64 px, mixed3b)."""
    root = tmp_path_factory.mktemp("demo")
    cache = root / "cache"
    cache.mkdir()
    sets = {"train.batch_size": 256, "train.init_samples": 512, "train.checkpoint_every": 0,
            "analyze.umap": "false", "analyze.render_intervals": 0, "analyze.batch_size": 8,
            "eval.max_images": 4, "featvis.render.model_size": 64, "featvis.render.param.size": 32}  # fmt: skip
    args = ["demo", "--offline", "--out", str(root / "d"), "--images", "16", "--size", "64", "--samples", "4096",
            "--features", "2", "--steps", "4", "--layer", LAYER, "--no-progress"]  # fmt: skip
    args += [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    offline = {"INCEPTION_SAE_WEIGHTS_URL": DEAD_URL, "INCEPTION_SAE_IMAGENETTE_URL": DEAD_URL,
               "INCEPTION_SAE_CACHE": str(cache)}  # fmt: skip
    result = run_cli_process(*args, **offline)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(cache.iterdir()) == []  # nothing was downloaded or cached
    return {"root": root / "d", "result": result}


@pytest.mark.slow
def test_offline_demo_runs_end_to_end_and_says_untrained(demo):
    root, result = demo["root"], demo["result"]
    run = root / "run"
    assert f"open {run / 'site' / 'index.html'}" in result.stdout.replace("\n", "")
    assert "UNTRAINED" in result.stderr
    assert json.loads((root / "DEMO.json").read_text())["untrained_weights"] is True
    assert json.loads((run / LAYER / "eval.json").read_text())["untrained_weights"] is True
    assert json.loads((run / LAYER / "analysis" / "summary.json").read_text())["model"]["untrained_weights"] is True
    site = json.loads((run / "site" / "site.json").read_text())
    assert "UNTRAINED" in site["title"] and site["layers"][0]["untrained"] is True
    assert len(list((run / LAYER / "featvis" / LAYER / "f").glob("*.png"))) == 2


@pytest.mark.slow
@pytest.mark.browser
def test_demo_site_layer_and_feature_pages_load(demo, browser):
    site = demo["root"] / "run" / "site"
    feature = json.loads((demo["root"] / "run" / LAYER / "featvis" / "featvis.json").read_text())
    fid = int(next(iter(feature["layers"][LAYER]["f"]["items"])))
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    for hash_ in (f"#/{LAYER}", f"#/{LAYER}/f/{fid}"):
        page.goto(site.joinpath("index.html").as_uri() + hash_)
        page.wait_for_selector(f"#app[data-ready='{hash_}']", timeout=30000)
        assert "UNTRAINED" in page.locator("#banner").inner_text()
        assert page.locator("h1").inner_text().strip()
    assert page.locator("img[src*='fv/']").count() >= 1  # the feature's visualisation is on its page
    page.wait_for_function("[...document.images].every(i => i.complete)")
    assert page.evaluate("[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length") == 0
    assert errors == []
    page.close()


def _tiny_imagenette(path: Path) -> Path:
    """A .tgz with Imagenette's layout: imagenette2-160/{train,val}/<wnid>/<name>.JPEG."""
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "val"):
            for wnid in ("n01440764", "n02102040"):
                for i in range(3):
                    buf = BytesIO()
                    Image.new("RGB", (20, 16), (40 * i, 90, 200)).save(buf, "JPEG")
                    info = tarfile.TarInfo(f"imagenette2-160/{split}/{wnid}/{wnid}_{i}.JPEG")
                    info.size = len(buf.getvalue())
                    tar.addfile(info, BytesIO(buf.getvalue()))
    return path


def test_imagenette_subset_is_cached_checksummed_and_balanced(tmp_path, monkeypatch):
    from inception_sae.pipeline import demo as demo_mod

    src = _tiny_imagenette(tmp_path / "src.tgz")
    monkeypatch.setenv("INCEPTION_SAE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(demo_mod.IMAGENETTE_ENV, src.as_uri())
    folder = demo_mod.imagenette_subset(tmp_path / "images", 4)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.JPEG"))
    assert files == ["n01440764/n01440764_0.JPEG", "n01440764/n01440764_1.JPEG",
                     "n02102040/n02102040_0.JPEG", "n02102040/n02102040_1.JPEG"]  # fmt: skip
    cached = tmp_path / "cache" / demo_mod.ARCHIVE
    record = json.loads(cached.with_name(cached.name + ".json").read_text())
    assert record["sha256"] == file_sha256(cached)
    src.unlink()  # the second time needs no download
    assert demo_mod.fetch_archive(src.as_uri(), cached) == cached
    cached.write_bytes(cached.read_bytes()[:-10])  # corrupted cache: refused in one line
    with pytest.raises(UserError, match="does not match the sha256"):
        demo_mod.fetch_archive(src.as_uri(), cached)
    with pytest.raises(UserError, match="could not download"):
        demo_mod.fetch_archive(DEAD_URL, tmp_path / "other.tgz")
