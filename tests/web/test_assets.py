"""Every page and asset under web/ is served with the strict CSP, and the pages need nothing
that policy forbids: no inline script or style, no event-handler attributes, nothing from
another origin; every module they import exists."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.config import Config
from gateway.pages import CSP, PAGES, WEB_DIR
from ledger.events import EventType

TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
ASSETS = sorted(
    p for kind in ("js", "css", "img") for p in (WEB_DIR / kind).glob("*") if p.is_file()
)
HTML = sorted(WEB_DIR.glob("*.html"))
# Read up front: the tests that compare are async, and file reads would block their loop.
CONTENT = {p: p.read_bytes() for p in [*ASSETS, *HTML]}


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> Any:
    config = Config(data_dir=tmp_path / "data", log_origin="test.example/telegate/log")
    return await aiohttp_client(create_app(config))


def _hardened(headers: Any) -> None:
    assert headers["Content-Security-Policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"


def test_every_page_and_module_exists() -> None:
    names = {p.relative_to(WEB_DIR).as_posix() for p in ASSETS}
    want = {"js/auth.js", "js/merkle.js", "js/note.js", "js/console.js", "js/enroll.js"}
    want |= {"js/me.js", "js/access.js", "js/call.js", "js/provider.js", "js/vitals.js"}
    want |= {"js/pin.js", "js/page.js"}
    assert want | {"css/site.css"} <= names
    assert {"console.html", "enroll.html", "me.html", "call.html"} <= {p.name for p in HTML}


@pytest.mark.parametrize("path", ASSETS, ids=lambda p: p.relative_to(WEB_DIR).as_posix())
async def test_every_asset_is_served_with_the_csp(client: Any, path: Path) -> None:
    resp = await client.get(f"/web/{path.parent.name}/{path.name}")
    assert resp.status == 200
    assert resp.headers["Content-Type"].split(";")[0] == TYPES[path.suffix]
    _hardened(resp.headers)
    assert await resp.read() == CONTENT[path]


# Pages still to be written (another issue's) are left out rather than skipped: in CI a
# skip fails the run.
WRITTEN = sorted(r for r, name in PAGES.items() if (WEB_DIR / name).is_file())


@pytest.mark.parametrize("route", WRITTEN)
async def test_every_page_is_served_with_the_csp(client: Any, route: str) -> None:
    resp = await client.get(route.replace("{session}", "s-1"))
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    _hardened(resp.headers)


class _Refs(HTMLParser):
    """What a page loads, and anything in it that the CSP would block."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for name in a:
            if name.startswith("on") or name == "style":
                self.inline.append(f"<{tag} {name}=...>")
        if tag == "style":
            self.inline.append("<style>")
        if tag == "script":
            if not a.get("src"):
                self.inline.append("<script> without src")
            else:
                self.loads.append(str(a["src"]))
        if tag == "link" and a.get("rel") == "stylesheet":
            self.loads.append(str(a.get("href")))
        if tag in ("img", "iframe", "embed", "object"):
            self.loads.append(str(a.get("src") or a.get("data")))


@pytest.mark.parametrize("page", HTML, ids=lambda p: p.name)
async def test_pages_load_only_their_own_files(client: Any, page: Path) -> None:
    refs = _Refs()
    refs.feed(CONTENT[page].decode())
    assert refs.inline == []
    assert refs.loads, "a page without its script or stylesheet"
    for src in refs.loads:
        assert src.startswith("/web/"), f"{page.name} loads {src} from elsewhere"
        resp = await client.get(src)
        assert resp.status == 200, src


IMPORT = re.compile(r"""^\s*(?:import|export)\b[^"';]*?\bfrom\s+["']([^"']+)["']""", re.M)


@pytest.mark.parametrize("module", sorted((WEB_DIR / "js").glob("*.js")), ids=lambda p: p.name)
def test_modules_import_only_modules_that_exist(module: Path) -> None:
    text = module.read_text()
    for spec in IMPORT.findall(text):
        assert spec.startswith("./") and spec.endswith(".js"), f"{module.name}: {spec}"
        assert (module.parent / spec).is_file(), f"{module.name} imports missing {spec}"
    # No CDN, no eval: the CSP forbids both, so nothing may depend on them. The SVG
    # namespace is a name that is never fetched.
    text = text.replace('"http://www.w3.org/2000/svg"', '""')
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"\beval\(|new Function\(", text)


def test_the_console_suggests_only_real_event_types() -> None:
    # Suggestions only (any type may be typed): none stale or misspelt. A new EventType is
    # not forced in here, so work on other event types does not break the web tests.
    text = (WEB_DIR / "js" / "console.js").read_text()
    listed = re.findall(r'"([a-z_.]+)"', text.split("const EVENT_TYPES = [", 1)[1].split("];")[0])
    assert len(listed) > 20 and len(set(listed)) == len(listed)
    assert set(listed) <= {t.value for t in EventType}
