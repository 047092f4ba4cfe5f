"""/openapi.json describes every route, and schemathesis finds no 500 or schema break."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.config import Config
from gateway.openapi import SPEC
from tests.conftest import need
from tests.gateway.conftest import LiveGateway

ROOT = Path(__file__).resolve().parents[2]


def _routes(app: web.Application) -> set[tuple[str, str]]:
    out = set()
    for route in app.router.routes():
        if route.method == "HEAD" or (route.name or "").startswith("page:"):
            continue  # browser pages (gateway.pages) are not API
        path = route.resource.canonical if route.resource else ""
        if path.startswith("/witness/"):
            # An embedded C2SP tlog-witness (witness_config): its plain-text protocol is
            # specified by C2SP, not by this API, and it is mounted only when configured.
            continue
        # aiohttp's "{path:.+}" style becomes OpenAPI's "{path}".
        path = path.replace("{path:.+}", "{path}")
        out.add((route.method.lower(), path))
    return out


def test_every_route_is_documented_and_nothing_else(config: Config) -> None:
    app = create_app(config)
    documented = {(m, p) for p, ops in SPEC["paths"].items() for m in ops}
    assert _routes(app) == documented


async def test_served_spec_is_the_module_spec(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/openapi.json")
    assert await resp.json() == SPEC
    assert SPEC["openapi"].startswith("3.1")


@pytest.fixture
def fuzzed_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A live gateway that does not rate-limit refusals: the fuzzer is one anonymous source
    sending thousands of refused requests, which the default limit rightly answers 429
    after a burst (tests/gateway/attacks/test_refusal_flood.py). This run tests the
    schema, not the limit."""
    monkeypatch.setenv("TELEGATE_REFUSAL_BURST", "1000000")
    gw = LiveGateway(tmp_path / "data")
    try:
        yield gw
    finally:
        gw.stop()


def test_schemathesis_finds_no_500_and_no_schema_break(fuzzed_gateway: Any, tmp_path: Path) -> None:
    live_gateway = fuzzed_gateway
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    need(st is not None, "schemathesis (pip install -e '.[dev]')")
    assert st is not None
    # positive_data_acceptance is excluded: a schema cannot state "old <= new", "index < size"
    # or which tile widths exist, so schema-valid requests can rightly get 400/404.
    result = subprocess.run(
        [
            st,
            "run",
            f"{live_gateway.url}/openapi.json",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "40",
            "--seed",
            "1",
            "--request-timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.gateway.st_hooks", "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", result.stdout)
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert selected and tested, result.stdout[-3000:]
    # Every operation but /openapi.json itself (schemathesis does not test the schema URL).
    assert int(tested.group(1)) == int(selected.group(2)) >= len(SPEC["paths"]) - 1


def test_clean_shutdown_records_gateway_stopped(live_gateway: Any) -> None:
    from ledger.store import SQLiteStore

    assert live_gateway.stop() == 0
    store = SQLiteStore(live_gateway.data_dir / "ledger.db", writer=False)
    try:
        entries = store.read_entries(0, store.size())
    finally:
        store.close()
    assert b'"type":"gateway.started"' in entries[0]
    assert b'"type":"gateway.stopped"' in entries[-1]
