"""The log viewer's static files: ``GET /`` (``index.html``) and ``GET /ui/{name}``.

Invariants:
- Only regular files directly inside ``zlog/gateway/ui/`` with a known type are served: a name
  with a ``/``, a leading dot or an unknown suffix is 404, so nothing outside that directory
  (this package's sources included) can be reached.
- Served with ``Cache-Control: no-cache`` (no build step, no fingerprinted names).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from zlog.gateway import elastic
from zlog.protocol.errors import ZlogError

UI_DIR = Path(__file__).resolve().parent / "ui"
UI_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml",
            ".png": "image/png", ".ico": "image/x-icon"}


async def get_index(request: web.Request) -> web.StreamResponse:
    # One root URL for two callers: a browser (Accept: text/html) gets the viewer, an
    # Elasticsearch client its product check (zlog.gateway.elastic).
    if elastic.wants_elasticsearch(request):
        return await elastic.root(request)
    return _static("index.html")


async def get_ui(request: web.Request) -> web.StreamResponse:
    return _static(request.match_info["name"])


def _static(name: str) -> web.StreamResponse:
    path = UI_DIR / name
    kind = UI_TYPES.get(path.suffix)
    if "/" in name or name.startswith(".") or kind is None or not path.is_file():
        raise ZlogError("NOT_FOUND", f"no such file {name!r}")
    return web.Response(body=path.read_bytes(), content_type=kind, charset="utf-8" if kind.startswith("text") else None,
                        headers={"Cache-Control": "no-cache"})


def setup(app: web.Application) -> None:
    app.router.add_get("/", get_index)
    app.router.add_get("/ui/{name}", get_ui)
