"""/openapi.json describes every route, and schemathesis finds no 500 or schema break."""

from __future__ import annotations

import dataclasses
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
from gateway.auth.names import MAX_NAME
from gateway.config import Config
from gateway.consent.guard import SCOPES
from gateway.fhir_version import FHIR_JSON
from gateway.jsonio import MAX_DEPTH
from gateway.openapi import SERVICE_PATHS, SPEC, assemble
from gateway.openapi_parts import NAMES
from gateway.rfc3339 import FORM
from gateway.sessions.http import CLOSE_OVER, CLOSE_REPLACED
from gateway.sessions.live import CLOSE_EXPIRED, CLOSE_FORBIDDEN
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


def test_two_areas_cannot_name_one_schema() -> None:
    one = {"Thing": {"type": "string"}}
    with pytest.raises(ValueError, match="Thing"):
        assemble(({},), (one, {"Thing": {"type": "integer"}}))


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
    # The media type every FHIR response is served as, exactly as served.
    assert f"`{FHIR_JSON}`" in SPEC["info"]["description"]


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


RATE_LIMITED = {"$ref": "#/components/responses/RateLimited"}


def test_every_operation_can_be_rate_limited() -> None:
    """The limiter answers a limited source before any handler runs, whatever the route:
    public operations (health, ledger, discovery, this document) included."""
    for name, op in _operations():
        assert op["responses"].get("429") == RATE_LIMITED, name
    limited = SPEC["components"]["responses"]["RateLimited"]
    assert limited["headers"]["Retry-After"]["required"] is True
    assert "application/problem+json" in limited["content"]
    assert "TELEGATE_REFUSAL_BURST" in limited["description"]
    assert "Any operation may answer 429" in SPEC["info"]["description"]


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


async def test_a_limited_source_gets_429_from_every_documented_operation(
    aiohttp_client: Any, config: Config
) -> None:
    """What the description says, the gateway does: once a source has spent its burst of
    anonymous refusals, every operation answers it 429, with Retry-After."""
    limited = dataclasses.replace(config, refusal_burst=1, refusal_rate=0.001)
    client = await aiohttp_client(create_app(limited, clock=lambda: 1_800_000_000.0))
    assert (await client.get("/v1/me")).status == 401  # the one refusal of the burst
    for name, _ in _operations():
        method, path = name.split(" ", 1)
        r = await client.request(method, _concrete(path))
        assert r.status == 429, (name, r.status)
        assert int(r.headers["Retry-After"]) > 0, name
        assert (await r.json())["type"].endswith("/too-many-requests"), name


def test_every_operation_that_authenticates_can_refuse_a_malformed_request() -> None:
    """The gateway derives its URL from the Host header to check a DPoP proof."""
    for name, op in _operations():
        if "security" in op:
            assert "400" in op["responses"], name
    malformed = SPEC["components"]["responses"]["Malformed"]["description"]
    assert "Host" in malformed


MALFORMED = {"$ref": "#/components/responses/Malformed"}


def test_every_json_body_can_be_refused_by_the_bounded_decoder() -> None:
    """gateway.jsonio's limits, and its problem type, are said wherever JSON is read."""
    limits = SPEC["components"]["responses"]["Malformed"]["description"]
    assert f"nesting deeper than {MAX_DEPTH}" in limits
    assert "2^63" in limits and "surrogate" in limits and "NaN" in limits
    assert "https://telegate.dev/problems/invalid-json" in limits
    bodies = 0
    for name, op in _operations():
        if "application/json" not in op.get("requestBody", {}).get("content", {}):
            continue
        bodies += 1
        refusal = op["responses"]["400"]
        assert refusal == MALFORMED or "invalid-json" in refusal["description"], name
    assert bodies >= 8


def test_every_time_a_client_sends_says_its_form() -> None:
    """Query parameters since/until and the consent's until: gateway.rfc3339's form."""
    times = [
        (name, p["description"])
        for name, op in _operations()
        for p in op.get("parameters", [])
        if p["name"] in ("since", "until")
    ]
    body = SPEC["paths"]["/v1/consents"]["post"]["requestBody"]["content"]["application/json"]
    times.append(("POST /v1/consents", body["schema"]["properties"]["until"]["description"]))
    assert len(times) == 7  # since and until of audit events, audit export, vitals; consent
    for name, desc in times:
        assert FORM in desc and "between years 0001 and 9999 in UTC" in desc, name


def _named(schema: dict[str, Any]) -> dict[str, Any]:
    """The component schema a ``$ref`` names (the schema itself if it is not one)."""
    ref = schema.get("$ref")
    if ref is None:
        return schema
    named: dict[str, Any] = SPEC["components"]["schemas"][ref.removeprefix("#/components/schemas/")]
    return named


def test_enrollment_takes_an_optional_display_name() -> None:
    op = SPEC["paths"]["/v1/enroll"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    name = body["properties"]["display_name"]
    # The bound the code enforces (gateway.auth.names), not another.
    assert (name["type"], name["minLength"], name["maxLength"]) == ("string", 1, MAX_NAME)
    assert "NFC" in name["description"] and "ledger" in name["description"]
    assert "display_name" not in body["required"]
    created = _named(op["responses"]["201"]["content"]["application/json"]["schema"])
    assert created["properties"]["display_name"]["type"] == ["string", "null"]


def test_enrollment_check_says_what_it_asks() -> None:
    op = SPEC["paths"]["/v1/enroll/check"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["invite"]
    ok = _named(op["responses"]["200"]["content"]["application/json"]["schema"])
    assert ok["properties"]["asks"]["items"]["enum"] == ["display_name"]
    assert "invalid-invite" in op["responses"]["400"]["description"]
    assert "security" not in op  # asked before the holder has any credential


# Every answer that lists people carries the names beside its rows (gateway.auth.names).
NAMED = [
    ("/v1/sessions", "get"),
    ("/v1/sessions/{id}", "get"),
    ("/v1/sessions/waiting", "get"),
    ("/v1/consents", "get"),
    ("/v1/audit/events", "get"),
    ("/v1/patients/{patient}/access-report", "get"),
]


@pytest.mark.parametrize(("path", "method"), NAMED)
def test_answers_that_list_people_carry_their_names(path: str, method: str) -> None:
    media = SPEC["paths"][path][method]["responses"]["200"]["content"]["application/json"]
    schema = _named(media["schema"])
    assert schema["properties"]["names"] == NAMES
    assert "names" in schema["required"]
    assert "not on the ledger" in NAMES["description"]


def test_the_signalling_socket_says_how_it_closes() -> None:
    op = SPEC["paths"]["/v1/sessions/{id}/ws"]["get"]
    desc = op["description"]
    for code in (CLOSE_FORBIDDEN, CLOSE_EXPIRED, CLOSE_OVER, CLOSE_REPLACED, 1001):
        assert str(code) in desc, code
    for reason in ("revoked", "consent", "consent_expired", "emergency_ended", "expired"):
        assert f"`{reason}`" in desc, reason
    assert "session.socket_closed" in desc
    assert "revoked" in op["responses"]["403"]["description"]


# The stores on the shared database (database_url) answer 503 when it cannot be used.
DATABASE_PREFIXES = ("/v1/consents", "/v1/emergency", "/v1/sessions")
DATABASE_ALSO = {
    "GET /v1/patients/{id}/vitals",  # consent
    "POST /v1/invites",  # a device invite's consent
    "POST /v1/enroll",  # the same, at redemption
    "GET /v1/audit/export",  # the FHIR export's consent revocations
}


def test_every_operation_on_the_database_can_be_unavailable() -> None:
    on_db = {n for n, _ in _operations() if n.split(" ")[1].startswith(DATABASE_PREFIXES)}
    assert len(on_db) == 13
    for name, op in _operations():
        if name in on_db | DATABASE_ALSO:
            assert "database cannot be reached" in op["responses"]["503"]["description"], name


# Operations without DPoP that record an event (enrollment, issuance, a call's state).
ANONYMOUS_RECORDING = ("POST /v1/enroll", "POST /oauth/token", "GET /v1/sessions/{id}/ws")


def test_every_operation_that_records_can_say_the_ledger_is_down() -> None:
    """An authenticated operation may record an event (a refusal at least); the ledger
    answers 503 with Retry-After when it cannot take it (gateway.errors)."""
    for name, op in _operations():
        if "security" in op or name in ANONYMOUS_RECORDING:
            assert "ledger cannot take" in op["responses"]["503"]["description"], name


LEDGER_READS = [
    "/ledger/tile/{path}",
    "/ledger/proof/inclusion",
    "/ledger/proof/consistency",
    "/ledger/entries/{index}",
]


@pytest.mark.parametrize("path", LEDGER_READS)
def test_ledger_reads_say_the_shared_database_may_be_down(path: str) -> None:
    responses = SPEC["paths"][path]["get"]["responses"]
    assert "PostgreSQL" in responses["503"]["description"]
    assert responses["503"]["headers"]["Retry-After"]["required"] is True
    assert "another replica" in responses["404"]["description"]


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
