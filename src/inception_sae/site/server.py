"""``site serve``: a read-only static server for a built site (standard library only).

GET and HEAD only, except ``POST /api/live`` and ``POST /api/explain`` when the live box is on.
Paths that climb out of the site (``..`` in any spelling, absolute or network paths, backslashes,
NUL) get 403, missing files 404; every response carries a MIME type, ``nosniff`` and a same-origin
content security policy.
"""

from __future__ import annotations

import json
import mimetypes
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import UserError
from .config import UPLOAD_TYPES, ServeConfig

MIME = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
}
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
       "script-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'")  # fmt: skip
LIVE_PATH = "/api/live"
EXPLAIN_PATH = "/api/explain"  #: POST an image (optional ?class=I,J): its top classes split into SAE features


def resolve(root: Path, target: str) -> tuple[int, Path | None]:
    """Request target -> (200, file) or (403 | 404, None); ``root`` must be resolved."""
    path = urlsplit(target).path
    decoded = unquote(path)
    if not path.startswith("/") or decoded.startswith("//") or "\\" in decoded or "\x00" in decoded:
        return 403, None
    if any(part in ("..", ".") for part in decoded.split("/")):
        return 403, None
    p = (root / decoded.lstrip("/")).resolve()
    if p != root and root not in p.parents:
        return 403, None  # e.g. a symlink pointing out of the site
    if p.is_dir():
        p = p / "index.html"
    return (200, p) if p.is_file() else (404, None)


class SiteHandler(BaseHTTPRequestHandler):
    """Serves ``server.root``; ``server.live`` (a LiveModel or None) answers ``/api/live``."""

    server_version = "inception-sae-site"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    server: SiteServer  # the server it is made by (socketserver's own type is BaseServer)

    def setup(self) -> None:
        # socket timeout: a silent client cannot hold a worker forever. socketserver reads self.timeout; typeshed
        # declares it a class variable, but one per handler is what socketserver supports
        self.timeout = self.server.request_timeout  # type: ignore[misc]
        super().setup()

    def log_message(self, format: str, *args) -> None:
        if getattr(self.server, "verbose", False):
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def send_bytes(self, code: int, body: bytes, ctype: str, head: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Cache-Control", "no-cache")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def send_json(self, code: int, obj: dict, head: bool = False) -> None:
        self.send_bytes(code, json.dumps(obj).encode(), "application/json", head)

    def send_error_json(self, code: int, message: str) -> None:
        self.send_json(code, {"error": message, "status": code})

    def serve_file(self, head: bool) -> None:
        if urlsplit(self.path).path == LIVE_PATH:
            return self.send_json(200, self.live_info(), head)
        code, path = resolve(self.server.root, self.path)
        if path is None:
            msg = "forbidden path" if code == 403 else "not found"
            return self.send_bytes(code, msg.encode(), "text/plain; charset=utf-8", head)
        ctype = MIME.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self.send_bytes(200, path.read_bytes(), ctype, head)

    def do_GET(self) -> None:
        self.serve_file(head=False)

    def do_HEAD(self) -> None:
        self.serve_file(head=True)

    def refuse(self) -> None:
        self.close_connection = True
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "GET, HEAD" + (", POST" if self.server.live else ""))
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()

    def do_PUT(self) -> None:
        self.refuse()

    def do_DELETE(self) -> None:
        self.refuse()

    def do_PATCH(self) -> None:
        self.refuse()

    def do_OPTIONS(self) -> None:
        self.refuse()

    def live_info(self) -> dict:
        live = self.server.live
        if live is None:
            return {"enabled": False}
        return {**live.info(), "max_bytes": self.server.max_upload, "types": list(UPLOAD_TYPES)}

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path not in (LIVE_PATH, EXPLAIN_PATH) or self.server.live is None:
            return self.refuse()
        classes = None
        if url.path == EXPLAIN_PATH and url.query:
            q = parse_qs(url.query).get("class", [""])[0]
            if not all(t.isdigit() for t in q.split(",")):
                self.close_connection = True  # the body is never read
                return self.send_error_json(400, "class must be class indices separated by commas")
            classes = [int(t) for t in q.split(",")]
        body = self.read_upload()
        if body is None:
            return
        from ..data.images import ImageDecodeError

        try:
            live = self.server.live
            result = live.explain(body, classes) if url.path == EXPLAIN_PATH else live.analyse(body)
        except ImageDecodeError as e:
            if e.reason == "too_large":  # a decompression bomb: small on the wire, huge once decoded
                return self.send_error_json(413, "image too large once decoded (a decompression bomb?)")
            return self.send_error_json(400, f"the upload is not a decodable image ({e.reason})")
        except UserError as e:
            return self.send_error_json(400, str(e))
        except Exception as e:  # the server must answer, whatever the model says
            return self.send_error_json(500, f"analysis failed: {type(e).__name__}: {e}")
        self.send_json(200, result)

    def read_upload(self) -> bytes | None:
        """The request body, or None after answering 411/400/413/415 (without reading a refused body)."""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        length = self.headers.get("Content-Length")
        self.close_connection = True  # a refused body is never read, so the connection cannot be reused
        if ctype not in UPLOAD_TYPES:
            self.send_error_json(415, f"unsupported type {ctype or '(none)'}; send one of {', '.join(UPLOAD_TYPES)}")
            return None
        if length is None:
            self.send_error_json(411, "Content-Length is required")
            return None
        if not length.isdigit():
            self.send_error_json(400, "bad Content-Length")
            return None
        if int(length) > self.server.max_upload:
            self.send_error_json(413, f"image too large: {int(length)} bytes > limit {self.server.max_upload}")
            return None
        if int(length) == 0:
            self.send_error_json(400, "empty upload")
            return None
        try:
            body = self.rfile.read(int(length))
        except TimeoutError:
            body = b""
        if len(body) < int(length):  # the client stopped sending (or went quiet past the timeout)
            self.send_error_json(408, f"the upload did not arrive within {self.server.request_timeout:g} s")
            return None
        return body


class SiteServer(ThreadingHTTPServer):
    daemon_threads = True
    server_address: tuple[str, int]  # an AF_INET (host, port)

    def __init__(self, cfg: ServeConfig, live=None, verbose: bool = False) -> None:
        root = Path(cfg.site).resolve()
        if not (root / "index.html").is_file():
            raise UserError(f"{cfg.site} is not a built site (no index.html); run `inception-sae site build` first")
        self.root, self.live, self.max_upload, self.verbose = root, live, cfg.max_upload, verbose
        self.request_timeout = cfg.request_timeout
        try:
            super().__init__((cfg.host, cfg.port), SiteHandler)
        except OSError as e:
            raise UserError(f"cannot listen on {cfg.host}:{cfg.port}: {e.strerror or e}") from e

    def handle_error(self, request, client_address) -> None:
        """Browsers drop connections all the time; only report real errors."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionResetError, BrokenPipeError, TimeoutError)):
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


def make_server(cfg: ServeConfig, verbose: bool = False, model=None) -> SiteServer:
    """A ready server (not yet serving); with ``cfg.live`` the SAE and the model (or ``model``) are loaded."""
    live = None
    if cfg.live:
        from .live import LiveModel

        assert cfg.sae is not None  # ServeConfig refuses live without an SAE
        live = LiveModel(cfg.sae, cfg.weights, cfg.seed, cfg.device, cfg.top, model=model)
    return SiteServer(cfg, live, verbose)
