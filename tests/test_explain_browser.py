"""The live box's "why these classes?" view in a real browser, and its endpoint over HTTP."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest
from factories import make_sae
from factories.site import make_analysis

from inception_sae.site import ServeConfig, SiteConfig, build_site, make_server


def serve(root, model, layer: str, d_in: int, m: int = 48):
    a = make_analysis(root / "a", layer, m, seed=5)
    out = build_site(SiteConfig(analyses=(a,), out=root / "site")).out
    server = make_server(
        ServeConfig(out, port=0, live=True, sae=make_sae(root / "sae", d_in, m, 6, layer=layer)), model=model
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def site5b(tmp_path_factory, model):
    server = serve(tmp_path_factory.mktemp("explain5b"), model, "mixed5b", 1024)
    yield server.url
    server.shutdown()
    server.server_close()


def photo_bytes() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (120, 150, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def post(url: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "image/png"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_explain_endpoint_splits_the_logit_exactly(site5b, model):
    code, j = post(site5b + "api/explain?class=7,300", photo_bytes())
    assert code == 200 and j["exact"] and [c["index"] for c in j["classes"]] == [7, 300]
    for c in j["classes"]:
        assert abs(c["residual"]) < 1e-4 * (1 + abs(c["target"]))
        assert all(f["link"].startswith("#/mixed5b/f/") for f in c["up"] + c["down"])
    assert post(site5b + "api/explain?class=abc", photo_bytes())[0] == 400
    assert post(site5b + "api/explain?class=5000", photo_bytes())[0] == 400


@pytest.mark.browser
def test_live_box_explains_the_top_classes(browser, site5b, tmp_path):
    img = tmp_path / "mine.png"
    img.write_bytes(photo_bytes())
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(site5b + "#/live")
    page.wait_for_selector("#live-file")
    page.set_input_files("#live-file", str(img))
    page.click("#live-go")
    page.wait_for_selector("#explain-go", timeout=60_000)
    page.click("#explain-go")
    page.wait_for_selector(".explain-class", timeout=120_000)
    classes = page.locator(".explain-class")
    assert classes.count() == 3
    for i in range(3):
        c = classes.nth(i)
        assert float(c.locator(".explain-target").inner_text()) == pytest.approx(
            float(c.locator(".explain-total").inner_text()), abs=2e-4
        )
        assert "SAE reconstruction error" in c.inner_text()  # the error term is always shown
    assert page.locator(".explain-feature img").count() > 0
    assert page.locator(".explain-feature a").first.get_attribute("href").startswith("#/mixed5b/f/")
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    assert errors == []
    page.locator(".explain-feature a").first.click()
    page.wait_for_selector("#app[data-ready^='#/mixed5b/f/']")
    ctx.close()
