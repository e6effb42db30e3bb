"""site serve: read-only, no traversal, loopback by default, MIME types, upload limits, live box."""

from __future__ import annotations

import http.client
import io
import json
import os
import threading

import pytest
from factories import make_sae
from factories.site import make_analysis
from PIL import Image

from inception_sae.site import ServeConfig, SiteConfig, build_site, make_server


def start(server):
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    return server


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site_serve")
    a = make_analysis(root / "a", "mixed3a", 6)
    out = build_site(SiteConfig(analyses=(a,), out=root / "site")).out
    (root / "secret.txt").write_text("secret")
    os.symlink(root / "secret.txt", out / "leak.txt")  # a link out of the site must not be followed
    return out


@pytest.fixture(scope="module")
def server(site):
    s = start(make_server(ServeConfig(site, port=0)))
    yield s
    s.shutdown()
    s.server_close()


@pytest.fixture(scope="module")
def live_server(site, tmp_path_factory, model):
    sae = make_sae(tmp_path_factory.mktemp("sae") / "sae", 256, 48, 6, layer="mixed3a")
    cfg = ServeConfig(site, port=0, live=True, sae=sae, max_upload=200_000)
    s = start(make_server(cfg, model=model))
    yield s
    s.shutdown()
    s.server_close()


def request(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """Send ``path`` verbatim (http.client does not normalise it) and return (status, headers, body)."""
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, dict(r.getheaders()), data


def jpeg(size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 80, 30)).save(buf, format="JPEG")
    return buf.getvalue()


def test_default_binding_is_loopback(site):
    assert ServeConfig(site).host == "127.0.0.1"
    s = make_server(ServeConfig(site, port=0))
    try:
        assert s.server_address[0] == "127.0.0.1"
    finally:
        s.server_close()


@pytest.mark.parametrize(
    "path",
    ["/../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd", "/data/../../secret.txt",
     "//etc/passwd", "/%2F%2Fetc/passwd", "/..%5c..%5csecret.txt", "/a%00.html", "/./index.html", "/leak.txt"],
)  # fmt: skip
def test_traversal_is_forbidden(server, path):
    status, _, body = request(server, "GET", path)
    assert status in (403, 404) and b"secret" not in body and b"root:" not in body


def test_absolute_paths_are_not_found(server):
    for path in ("/etc/passwd", "http://evil/etc/passwd", "/%2Fetc%2Fpasswd"):
        status, _, body = request(server, "GET", path)
        assert status in (403, 404) and b"root:" not in body


@pytest.mark.parametrize(
    ("path", "ctype"),
    [("/", "text/html"), ("/index.html", "text/html"), ("/static/core.js", "text/javascript"),
     ("/static/app.css", "text/css"), ("/data/mixed3a/f/0.js", "text/javascript"), ("/site.json", "application/json"),
     ("/a/mixed3a/images/crops/c0.jpg", "image/jpeg"), ("/a/mixed3a/figures/branch_shares_pos.png", "image/png")],
)  # fmt: skip
def test_files_and_mime_types(server, path, ctype):
    status, headers, body = request(server, "GET", path)
    assert status == 200 and headers["Content-Type"].startswith(ctype) and body
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    status, headers, body = request(server, "HEAD", path)
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0


def test_read_only(server):
    for method in ("PUT", "DELETE", "PATCH", "POST"):
        status, _, _ = request(server, method, "/index.html", body=b"x")
        assert status == 405
    status, _, body = request(server, "GET", "/api/live")
    assert status == 200 and json.loads(body) == {"enabled": False}
    status, _, _ = request(server, "POST", "/api/live", body=jpeg(), headers={"Content-Type": "image/jpeg"})
    assert status == 405


def test_missing_is_404(server):
    assert request(server, "GET", "/data/mixed3a/f/999.js")[0] == 404


def test_uploads_too_large_or_wrong_type_are_refused(live_server):
    conn = http.client.HTTPConnection(*live_server.server_address[:2], timeout=30)
    conn.putrequest("POST", "/api/live")
    conn.putheader("Content-Type", "image/jpeg")
    conn.putheader("Content-Length", str(11 * 2**20))
    conn.endheaders()  # the body is never sent: the server must answer from the headers alone
    r = conn.getresponse()
    assert r.status == 413 and "too large" in json.loads(r.read())["error"]
    conn.close()
    for ctype, body, code in (("text/html", b"<html>", 415), ("application/x-sh", b"rm -rf", 415), ("", jpeg(), 415),
                              ("image/png", b"\x89PNG not really", 400), ("image/jpeg", b"", 400)):  # fmt: skip
        status, headers, data = request(live_server, "POST", "/api/live", body=body, headers={"Content-Type": ctype})
        assert status == code, (ctype, data)
        assert headers["Content-Type"] == "application/json" and json.loads(data)["error"]


def test_a_decompression_bomb_is_refused_with_413(live_server):
    """20000 x 20000 pixels in a 49 kB PNG: refused before it is decoded, not a 500."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, format="PNG")
    assert len(buf.getvalue()) < 200_000  # within the upload limit: only decoding would reveal it
    status, _, data = request(live_server, "POST", "/api/live", body=buf.getvalue(),
                              headers={"Content-Type": "image/png"})  # fmt: skip
    assert status == 413 and "decoded" in json.loads(data)["error"]


def test_live_returns_features(live_server):
    status, _, data = request(live_server, "GET", "/api/live")
    info = json.loads(data)
    assert info["enabled"] and info["layer"] == "mixed3a" and info["max_bytes"] == 200_000
    status, _, data = request(
        live_server, "POST", "/api/live", body=jpeg((80, 60)), headers={"Content-Type": "image/jpeg"}
    )
    assert status == 200, data
    out = json.loads(data)
    assert out["layer"] == "mixed3a" and out["positions"] == 28 * 28
    assert 0 < len(out["features"]) <= 12
    maxes = [f["max"] for f in out["features"]]
    assert maxes == sorted(maxes, reverse=True) and all(0 <= f["id"] < 48 for f in out["features"])
    assert out["features"][0]["heatmap"].startswith("data:image/jpeg;base64,")


def test_not_a_site_is_a_user_error(tmp_path):
    from inception_sae.errors import UserError

    with pytest.raises(UserError, match="not a built site"):
        make_server(ServeConfig(tmp_path, port=0))
    with pytest.raises(ValueError, match="--live needs --sae"):
        ServeConfig(tmp_path, live=True)


def test_cli_serve_prints_a_loopback_url_and_serves(site):
    import re
    import subprocess
    import urllib.request

    from factories.cli import cli_command, process_env

    cmd = cli_command("site", "serve", site, "--port", "0")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=process_env())
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
        with urllib.request.urlopen(url + "index.html", timeout=30) as r:
            assert r.status == 200 and b"data/site.js" in r.read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_body_that_never_arrives_times_out(site, model, tmp_path):
    import socket

    sae = make_sae(tmp_path / "sae", 256, 48, 6, layer="mixed3a")
    s = start(make_server(ServeConfig(site, port=0, live=True, sae=sae, request_timeout=0.5), model=model))
    try:
        with socket.create_connection(s.server_address[:2], timeout=30) as sock:
            head = b"POST /api/live HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 5000\r\n\r\n"
            sock.sendall(head)
            sock.sendall(b"\xff\xd8 only the start")  # then silence
            reply = b""
            while chunk := sock.recv(4096):  # the server answers and closes the connection
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 408") and b"did not arrive within 0.5 s" in reply
        with socket.create_connection(s.server_address[:2], timeout=30) as sock:  # headers that never end
            sock.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n")
            assert sock.recv(4096) == b""  # closed by the server, not left open
    finally:
        s.shutdown()
        s.server_close()
