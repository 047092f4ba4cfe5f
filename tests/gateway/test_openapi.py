"""/openapi.json describes every route, and schemathesis finds no 500 or schema break."""

from __future__ import annotations

import importlib
import json
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
from gateway.consent.guard import SCOPES
from gateway.openapi import SERVICE_PATHS, SPEC, assemble
from tests.conftest import need
from tests.gateway.conftest import LiveGateway

ROOT = Path(__file__).resolve().parents[2]


def _api_routes(app: web.Application) -> list[tuple[str, str, web.AbstractRoute]]:
    """(method, OpenAPI path, route) of every API route."""
    out = []
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
        out.append((route.method.lower(), path, route))
    return out


def _routes(app: web.Application) -> set[tuple[str, str]]:
    return {(m, p) for m, p, _ in _api_routes(app)}


def test_every_route_is_documented_and_nothing_else(config: Config) -> None:
    app = create_app(config)
    documented = {(m, p) for p, ops in SPEC["paths"].items() for m in ops}
    assert _routes(app) == documented


async def test_served_spec_is_the_module_spec(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/openapi.json")
    assert await resp.json() == SPEC
    assert SPEC["openapi"].startswith("3.1")


def _area_paths(handler_module: str) -> Any:
    """The paths the area of a handler's module describes (its ``openapi.PATHS``)."""
    if handler_module in ("gateway.app", "gateway.openapi"):
        return SERVICE_PATHS
    if handler_module == "gateway.ledger_api":
        return importlib.import_module("gateway.ledger_openapi").PATHS
    package = handler_module.rsplit(".", 1)[0]
    return importlib.import_module(f"{package}.openapi").PATHS


def test_each_area_describes_its_own_routes(config: Config) -> None:
    """A route is described beside it (gateway/<area>/openapi.py), not somewhere else."""
    for method, path, route in _api_routes(create_app(config)):
        owner = _area_paths(route.handler.__module__)
        assert method in owner.get(path, {}), (method, path, route.handler.__module__)


def test_two_areas_cannot_describe_one_path() -> None:
    one = {"/x": {"get": {"responses": {}}}}
    with pytest.raises(ValueError, match="/x"):
        assemble((one, {"/x": {"post": {"responses": {}}}}))


def _walk(node: Any) -> Any:
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def test_every_reference_resolves() -> None:
    refs = {n["$ref"] for n in _walk(SPEC) if isinstance(n, dict) and "$ref" in n}
    assert refs
    for ref in refs:
        node = SPEC
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]


def test_fhir_version_is_said_once_in_the_info() -> None:
    assert "FHIR R4 (4.0.1)" in SPEC["info"]["description"]
    assert json.dumps(SPEC).count("4.0.1") == 1


def test_every_enumeration_of_consent_scopes_has_them_all() -> None:
    enums = [
        n["enum"] for n in _walk(SPEC) if isinstance(n, dict) and "vitals.read" in n.get("enum", [])
    ]
    assert enums
    for enum in enums:
        # Registering a monitoring device for a patient needs the patient's consent.
        assert "devices" in enum
        assert set(SCOPES) <= set(enum)


def _operations() -> Any:
    for path, ops in SPEC["paths"].items():
        for method, op in ops.items():
            yield f"{method.upper()} {path}", op


# Operations that refuse without a credential to name the caller, besides the DPoP ones.
ANONYMOUS_REFUSALS = {"POST /v1/enroll", "POST /oauth/token", "GET /v1/sessions/{id}/ws"}
RATE_LIMITED = {"$ref": "#/components/responses/RateLimited"}


def test_every_operation_that_can_refuse_anonymously_can_be_rate_limited() -> None:
    refusing = {name for name, op in _operations() if "security" in op} | ANONYMOUS_REFUSALS
    limited = {name for name, op in _operations() if op["responses"].get("429") == RATE_LIMITED}
    assert limited == refusing
    retry = SPEC["components"]["responses"]["RateLimited"]["headers"]["Retry-After"]
    assert retry["required"] is True
    assert "application/problem+json" in SPEC["components"]["responses"]["RateLimited"]["content"]


def test_every_operation_that_authenticates_can_refuse_a_malformed_request() -> None:
    """The gateway derives its URL from the Host header to check a DPoP proof."""
    for name, op in _operations():
        if "security" in op:
            assert "400" in op["responses"], name
    malformed = SPEC["components"]["responses"]["Malformed"]["description"]
    assert "Host" in malformed
    assert "too deep" in malformed


def test_enrollment_takes_an_optional_display_name() -> None:
    schema = SPEC["paths"]["/v1/enroll"]["post"]["requestBody"]["content"]["application/json"]
    body = schema["schema"]
    assert body["properties"]["display_name"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 100,
        "description": "the holder's display name, when the invite carries none",
    }
    assert "display_name" not in body["required"]


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
