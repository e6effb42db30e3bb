"""Weights: loading and checking, random init, and the downloader against a local HTTP server."""

from __future__ import annotations

import http.server
import io
import json
import threading
from pathlib import Path

import pytest
import torch

from inception_sae import WeightsError, load_model
from inception_sae.models import weights as W


@pytest.fixture(scope="module")
def good_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save(W.random_state_dict(7), buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(good_bytes):
    """127.0.0.1 server: /good.pth, /truncated.pth (closes early), /wrong.pth, /garbage.pth."""
    wrong = io.BytesIO()
    sd = W.random_state_dict(7)
    sd.pop("mixed4d_5x5_pre_relu_conv.bias")
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, wrong)
    payloads = {"/good.pth": good_bytes, "/wrong.pth": wrong.getvalue(), "/garbage.pth": b"not a state dict" * 100}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def do_GET(self):
            if self.path == "/truncated.pth":
                self.send_response(200)
                self.send_header("Content-Length", str(len(good_bytes)))
                self.end_headers()
                self.wfile.write(good_bytes[: len(good_bytes) // 3])
                self.wfile.flush()
                self.close_connection = True
                return
            body = payloads.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(W.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_download_success_records_and_verifies_sha256(server, cache, monkeypatch, good_bytes):
    monkeypatch.setenv(W.URL_ENV, f"{server}/good.pth")
    model = load_model(progress=False)
    path = cache / W.WEIGHTS_FILENAME
    assert path.read_bytes() == good_bytes
    record = json.loads((cache / (W.WEIGHTS_FILENAME + ".json")).read_text())
    assert record["size"] == len(good_bytes) and len(record["sha256"]) == 64
    assert model.identity == f"inception5h.pth:sha256:{record['sha256']}"
    assert not model.is_random
    ref = load_model("random", seed=7)
    torch.testing.assert_close(model.fc.weight, ref.fc.weight)
    # second load uses the cache (server not needed) and checks it against the record
    monkeypatch.setenv(W.URL_ENV, f"{server}/missing.pth")
    assert load_model(progress=False).identity == model.identity
    with open(path, "r+b") as f:  # corrupt one byte
        f.seek(100)
        f.write(b"\x00" if good_bytes[100:101] != b"\x00" else b"\x01")
    with pytest.raises(WeightsError, match="sha256"):
        load_model(progress=False)


def test_interrupted_download_leaves_nothing(server, cache):
    dest = cache / W.WEIGHTS_FILENAME
    with pytest.raises(WeightsError, match="interrupted"):
        W.download(f"{server}/truncated.pth", dest, progress=False)
    assert not dest.exists()
    assert not [p.name for p in cache.iterdir() if p.name.endswith((".part", ".tmp"))]


@pytest.mark.parametrize(("name", "match"), [("wrong.pth", "missing: mixed4d_5x5"), ("garbage.pth", "not a PyTorch")])
def test_wrong_content_is_rejected(server, cache, name, match):
    dest = cache / W.WEIGHTS_FILENAME
    with pytest.raises(WeightsError, match=match):
        W.download(f"{server}/{name}", dest, progress=False)
    assert not dest.exists()


def test_offline_missing_file_is_one_line_with_remedy(cache, monkeypatch):
    monkeypatch.setenv(W.URL_ENV, "http://127.0.0.1:9/inception5h.pth")  # discard port: refused
    with pytest.raises(WeightsError) as e:
        load_model(progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "--weights" in msg


def test_mismatched_state_dict_lists_problems():
    sd = W.random_state_dict(0)
    sd["conv2d0_pre_relu_conv.weight"] = torch.zeros(64, 3, 5, 5)
    del sd["softmax2_pre_activation_matmul.bias"]
    sd["aux.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError) as e:
        load_model(sd)
    msg = str(e.value)
    assert "missing: softmax2_pre_activation_matmul.bias" in msg
    assert "unexpected: aux.weight" in msg
    assert "conv2d0_pre_relu_conv.weight (64, 3, 5, 5) != (64, 3, 7, 7)" in msg


def test_path_and_state_dict_and_random(tmp_path):
    sd = W.random_state_dict(3)
    path = tmp_path / "inception5h.pth"
    torch.save(sd, path)
    a = load_model(path)
    b = load_model(sd)
    c = load_model("random", seed=3)
    d = load_model("random:3")
    for m in (b, c, d):
        torch.testing.assert_close(a.mixed4d.conv_5x5.conv.weight, m.mixed4d.conv_5x5.conv.weight)
    assert a.identity.startswith("inception5h.pth:sha256:")
    assert b.identity.startswith("state_dict:sha256:")
    assert c.identity == d.identity == "random:3" and c.is_random
    assert load_model("random", seed=4).identity == "random:4"
    assert not torch.equal(load_model("random", seed=4).fc.weight, c.fc.weight)
    # round trip through the public key names
    torch.testing.assert_close(
        W.public_state_dict(a)["mixed3a_1x1_pre_relu_conv.bias"], sd["mixed3a_1x1_pre_relu_conv.bias"]
    )


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_model(tmp_path / "nope.pth")
