"""What a wheel installs: the packages and the browser pages (data-files)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from gateway import pages

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_every_page_and_asset(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("telegate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = next(n.split("/data/")[0] for n in names if "/data/share/telegate/web/" in n)
    want = {
        f"{data}/data/share/telegate/web/{p.relative_to(pages.WEB_DIR)}"
        for p in pages.WEB_DIR.rglob("*")
        if p.suffix in (".html", ".js", ".css")
    }
    assert want and want <= names, sorted(want - names)
    assert "gateway/pages.py" in names and "ledger/merkle.py" in names
    # Alembic's tree, which `telegate db upgrade` and the embedded start-up run from the wheel.
    migrations = {"env.py", "script.py.mako", "versions/consent_0001_initial.py"}
    assert {f"gateway/db/migrations/{m}" for m in migrations} <= names


def test_an_installed_gateway_looks_where_the_wheel_puts_the_pages() -> None:
    assert pages._web_dir(str(ROOT / "gateway" / "pages.py")) == ROOT / "web"  # a checkout
    # Installed from a wheel: no web/ beside the package, so the prefix's share/telegate/web.
    installed = pages._web_dir("/nowhere/site-packages/gateway/pages.py")
    assert installed == Path(sys.prefix) / "share" / "telegate" / "web"
