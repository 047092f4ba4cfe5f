"""The browser pages under ``web/``: served as plain files, no build step, no CDN.

Pages are not API: they are not in ``/openapi.json``. Every page and module is served with a
strict Content-Security-Policy (scripts and connections only from this origin), so a page
can run nothing it did not ship with.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

__all__ = ["PAGES", "WEB_DIR", "setup"]


def _web_dir(package_file: str = __file__) -> Path:
    """``web/`` beside the package (a checkout or an editable install), else where a wheel
    installs it (pyproject ``data-files``: ``<prefix>/share/telegate/web``)."""
    beside = Path(package_file).resolve().parent.parent / "web"
    if beside.is_dir():
        return beside
    return Path(sys.prefix) / "share" / "telegate" / "web"


WEB_DIR = _web_dir()
#: Route -> file under web/. A page's JavaScript is in web/js, its styles in web/css.
PAGES = {
    "/console": "console.html",
    "/me": "me.html",
    "/enroll": "enroll.html",
    "/call/{session}": "call.html",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; media-src 'self' blob: mediastream:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


def _harden(resp: web.StreamResponse) -> web.StreamResponse:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Cache-Control"] = "no-cache"
    return resp


def _page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        path = WEB_DIR / name
        if not path.is_file():
            raise web.HTTPNotFound()
        return _harden(web.FileResponse(path, headers={"Content-Type": "text/html"}))

    return handler


async def asset(request: web.Request) -> web.StreamResponse:
    """``/web/{kind}/{name}``: one file of web/js or web/css, nothing else (no traversal,
    no directory listing)."""
    kind, name = request.match_info["kind"], request.match_info["name"]
    suffix = Path(name).suffix
    if kind not in ("js", "css", "img") or "/" in name or name.startswith(".") or len(name) > 64:
        raise web.HTTPNotFound()
    path = WEB_DIR / kind / name
    if suffix not in _TYPES or not path.is_file():
        raise web.HTTPNotFound()
    return _harden(web.FileResponse(path, headers={"Content-Type": _TYPES[suffix]}))


def setup(app: web.Application) -> None:
    for route, name in PAGES.items():
        app.router.add_get(route, _page(name), name=f"page:{name.removesuffix('.html')}")
    app.router.add_get("/web/{kind}/{name}", asset, name="page:asset")
