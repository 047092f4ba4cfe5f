"""Every 2xx body of /openapi.json has a named schema, and every live answer of a realistic
scenario (enroll, token, consent, a call, vitals, an incentive program and its reward, audit,
the access report, receipts) is valid against its operation's schema in the served document,
checked with ``jsonschema`` (JSON Schema 2020-12, OpenAPI 3.1's dialect)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import jsonschema
import pytest
from aiohttp import ClientResponse

from gateway.config import Config
from gateway.openapi import SPEC
from tests.gateway.apischema import check_body
from tests.gateway.idclient import Client, call, get_token, invite_and_enroll
from tests.gateway.vitals.world import World, batch, hr
from tests.supply.world import World as Supply
from tests.supply.world import (
    commission,
    document,
    pack,
    recall,
    receive,
    sgtin,
    ship,
    sign,
    sscc,
)

JSON_TYPES = ("application/json", "application/fhir+json", "application/jwk-set+json")


class Recorder:
    """Wraps a test client: every answer it gets is read and kept for checking."""

    def __init__(self, client: Client) -> None:
        self.seen: list[tuple[str, str, int, str, bytes]] = []
        inner = client._request

        async def request(method: str, path: Any, **kw: Any) -> ClientResponse:
            resp = await inner(method, path, **kw)
            body = await resp.read()
            self.seen.append((method, resp.url.path, resp.status, resp.content_type, body))
            return resp

        client._request = request  # type: ignore[method-assign]

    def checked(self) -> Iterator[str]:
        for method, path, status, ctype, body in self.seen:
            if ctype in JSON_TYPES or ctype == "application/problem+json":
                yield check_body(method, path, status, ctype, json.loads(body))


async def test_every_answer_of_a_realistic_scenario_is_valid_against_its_schema(
    client: Client, config: Config
) -> None:
    rec = Recorder(client)
    w = await World(client).setup(config)
    c = client
    aud = await invite_and_enroll(c, w.adm, w.adm_t, "auditor")
    aud_t = await get_token(c, aud)
    # Discovery and the service's own answers.
    for path in (
        "/healthz",
        "/readyz",
        "/.well-known/jwks.json",
        "/.well-known/smart-configuration",
    ):
        assert (await c.get(path)).status == 200, path
    for path in ("/fhir/metadata", "/fhir/.well-known/smart-configuration"):
        assert (await c.get(path)).status == 200, path
    # Who am I, my issuance receipt, and the token's introspection.
    me = await (await call(c, "GET", "/v1/me", w.pat, w.pat_t)).json()
    r = await call(c, "GET", f"/v1/attestations/{me['jti']}/receipt", w.pat, w.pat_t)
    assert r.status == 200, await r.text()
    r = await call(c, "POST", "/oauth/introspect", w.adm, w.adm_t, data={"token": w.pat_t})
    assert r.status == 200, await r.text()
    r = await c.post("/v1/enroll/check", json={"invite": "nope"})
    assert r.status == 400
    r = await call(c, "POST", "/v1/invites", w.adm, w.adm_t, json={"role": "patient"})
    r = await c.post("/v1/enroll/check", json={"invite": (await r.json())["invite"]})
    assert r.status == 200
    assert (await c.get("/openapi.json")).status == 200
    # Consent: grant, list, and an emergency.
    consent = await w.grant(["vitals.read", "call"])
    assert (await call(c, "GET", "/v1/consents", w.pat, w.pat_t)).status == 200
    assert (await call(c, "GET", "/v1/consents", w.prov, w.prov_t)).status == 200
    # A call: scheduled, seen waiting, admitted, ended; TURN credentials.
    sid, prov_ws, pat_ws = await w.admitted_call()
    for path in ("/v1/sessions", f"/v1/sessions/{sid}", "/v1/sessions/waiting"):
        assert (await call(c, "GET", path, w.prov, w.prov_t)).status == 200, path
    assert (await call(c, "GET", "/v1/turn-credentials", w.pat, w.pat_t)).status == 200
    r = await call(c, "POST", f"/v1/sessions/{sid}/end", w.prov, w.prov_t)
    assert r.status == 200, await r.text()
    await prov_ws.close()
    await pat_ws.close()
    r = await call(c, "POST", "/v1/sessions", w.prov, w.prov_t, json={"patient": w.pat.sub})
    absent = (await r.json())["id"]
    r = await call(c, "POST", f"/v1/sessions/{absent}/no-show", w.prov, w.prov_t)
    assert r.status == 200, await r.text()
    # Vitals: a batch, the same batch again, a read as JSON and as FHIR.
    now = w.now()
    b = batch([hr(72, now - 5), hr(74, now - 4)])
    assert (await w.send(b)).status == 201
    assert (await w.send(b)).status == 200
    assert (await w.read(w.prov, w.prov_t)).status == 200
    r = await w.read(w.prov, w.prov_t, format="fhir")
    assert r.status == 200, await r.text()
    # Audit: a query, the patient's access report (JSON and FHIR), a FHIR export.
    r = await call(c, "GET", "/v1/audit/events", aud, aud_t, params={"limit": "5"})
    assert r.status == 200, await r.text()
    rows = (await r.json())["rows"]
    report = f"/v1/patients/{w.pat.sub}/access-report"
    assert (await call(c, "GET", report, w.pat, w.pat_t)).status == 200
    assert (await call(c, "GET", report, aud, aud_t, params={"format": "fhir"})).status == 200
    r = await call(c, "GET", "/v1/audit/export", aud, aud_t, params={"format": "fhir"})
    assert r.status == 200, await r.text()
    # The ledger: proofs and entries the answers above point at.
    size = (await (await c.get("/readyz")).json())["ledger_size"]
    idx = rows[0]["index"]
    assert (
        await c.get("/ledger/proof/inclusion", params={"index": idx, "size": size})
    ).status == 200
    assert (await c.get("/ledger/proof/consistency", params={"old": 1, "new": size})).status == 200
    assert (await c.get(f"/ledger/entries/{idx}")).status == 200
    # FHIR reads, with SMART scopes.
    pat_fhir = await get_token(
        c,
        w.pat,
        "patient/Observation.rs patient/Consent.rs patient/Provenance.rs patient/AuditEvent.rs",
    )
    r = await call(c, "GET", "/fhir/Observation", w.pat, pat_fhir)
    obs = (await r.json())["entry"][0]["resource"]["id"]
    assert (await call(c, "GET", f"/fhir/Observation/{obs}", w.pat, pat_fhir)).status == 200
    for path, params in (
        ("/fhir/Consent", {"patient": w.pat.sub}),
        ("/fhir/AuditEvent", {}),
        ("/fhir/Provenance", {"target": f"Observation/{obs}"}),
    ):
        r = await call(c, "GET", path, w.pat, pat_fhir, params=params)
        assert r.status == 200, (path, await r.text())
    await _incentives(w)
    # Revoking: the consent, an emergency access, an identity; erasing a patient's vitals.
    r = await call(c, "DELETE", f"/v1/consents/{consent['id']}", w.pat, w.pat_t)
    assert r.status == 200, await r.text()
    reason = {"patient": w.pat.sub, "reason": "unconscious on arrival, no consent on file"}
    r = await call(c, "POST", "/v1/emergency-access", w.prov, w.prov_t, json=reason)
    assert r.status == 201, await r.text()
    erase = {"reason": "patient_request"}
    r = await call(c, "POST", f"/v1/patients/{w.pat.sub}/erase", w.adm, w.adm_t, json=erase)
    assert r.status == 200, await r.text()
    r = await call(
        c,
        "POST",
        "/v1/revocations",
        w.adm,
        w.adm_t,
        json={"sub": w.other.sub, "reason": "key_compromise"},
    )
    assert r.status == 200, await r.text()
    # One name for one thing: every proof is `inclusion_proof` or `consistency_proof`; the
    # old `proof` beside it (until 0.2.0, docs/api-changes.md) is the same list.
    renamed = 0
    for _, path, _, ctype, body in rec.seen:
        if ctype in JSON_TYPES and path != "/openapi.json":  # the document names both
            for node in _walk(json.loads(body)):
                if isinstance(node, dict) and "proof" in node:
                    new = node.get("inclusion_proof", node.get("consistency_proof"))
                    assert new == node["proof"], node
                    renamed += 1
    assert renamed >= 3  # audit rows, access-report rows, both ledger proofs
    checked = list(rec.checked())
    ok = {n for n in checked if " 2" in n}
    # Every documented 2xx JSON answer but the supply ones (the next test) was checked.
    documented = {
        f"{method.upper()} {path} {status}"
        for path, ops in SPEC["paths"].items()
        for method, op in ops.items()
        for status, response in op["responses"].items()
        if status.startswith("2") and any(_is_json(t) for t in response.get("content", {}))
    }
    assert documented - ok == {
        "POST /v1/supply/events 201",
        "POST /v1/supply/events 200",
        "GET /v1/supply/items/{path} 200",
    }


async def _incentives(w: World) -> None:
    """A program published (and the same text again) and listed; the patient enrolled (and
    again), a reading in its first period, their progress; that finished period evaluated
    (passed: a reward), its disclosure; the reward listed and revoked, and the status list.
    The program started two days ago in 1-day periods: period 0 is over, today's is open."""
    c = w.client
    start = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=2)
    program = {
        "name": "A heart rate a day",
        "start": start.isoformat(),
        "period_days": 1,
        "periods": 4,
        "rule": 'count("8867-4") >= 1',
        "points": 3,
    }
    r = await call(c, "POST", "/v1/programs", w.adm, w.adm_t, json=program)
    assert r.status == 201, await r.text()
    pid = (await r.json())["id"]
    r = await call(c, "POST", "/v1/programs", w.adm, w.adm_t, json=program)
    assert r.status == 200, await r.text()
    assert (await call(c, "GET", "/v1/programs", w.pat, w.pat_t)).status == 200
    for status in (201, 200):
        r = await call(c, "POST", f"/v1/programs/{pid}/enroll", w.pat, w.pat_t)
        assert r.status == status, await r.text()
    day0 = int(dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC).timestamp())
    assert (await w.send(batch([hr(70, day0 + 8 * 3600)]))).status == 201
    r = await call(c, "GET", f"/v1/programs/{pid}/progress", w.pat, w.pat_t)
    assert r.status == 200, await r.text()
    assert "aggregates" in await r.json()  # enrolled in a running program: today's so far
    r = await call(c, "POST", f"/v1/programs/{pid}/evaluate", w.pat, w.pat_t, json={"period": 0})
    assert r.status == 200, await r.text()
    reward = (await r.json())["reward"]
    assert reward
    r = await call(c, "GET", f"/v1/programs/{pid}/evaluations/0", w.pat, w.pat_t)
    assert r.status == 200, await r.text()
    assert (await call(c, "GET", "/v1/rewards", w.pat, w.pat_t)).status == 200
    r = await call(c, "POST", f"/v1/rewards/{reward}/revoke", w.adm, w.adm_t)
    assert r.status == 200, await r.text()
    r = await c.get("/v1/rewards/status")
    assert r.status == 200 and r.content_type == "application/statuslist+jwt"
    rewards = await (await call(c, "GET", "/v1/rewards", w.pat, w.pat_t)).json()
    assert [x["revoked"] is not None for x in rewards["rewards"]] == [True]


def _is_json(ctype: str) -> bool:
    return ctype == "application/json" or ctype.endswith("+json")


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def test_the_old_proof_spelling_is_marked_deprecated_and_nothing_else_is_named_so() -> None:
    """``proof`` survives only as the deprecated alias; a receipt never had it."""
    schemas = SPEC["components"]["schemas"]
    holders = [n for n, s in schemas.items() if "proof" in s.get("properties", {})]
    assert sorted(holders) == [
        "AccessRow",
        "AuditRow",
        "ConsistencyProofAnswer",
        "InclusionProofAnswer",
        "UnitProof",
    ]
    for name in holders:
        props = schemas[name]["properties"]
        assert props["proof"]["deprecated"] is True, name
        assert "proof" not in schemas[name]["required"], name
        assert {"inclusion_proof", "consistency_proof"} & set(schemas[name]["required"]), name
    assert "proof" not in schemas["Receipt"]["properties"]


def _area_of(path: str) -> str:
    """The module that describes ``path`` (its ``PATHS``), to name in a failure."""
    for name, module in list(sys.modules.items()):
        paths = getattr(module, "PATHS", None)
        if name.startswith("gateway") and isinstance(paths, dict) and path in paths:
            return name
    return "unknown area"


def _json_2xx() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in SPEC["paths"].items():
        for method, op in ops.items():
            for status, response in op["responses"].items():
                if not status.startswith("2"):
                    continue
                for ctype, media in response.get("content", {}).items():
                    if _is_json(ctype):
                        name = f"{method.upper()} {path} {status} {ctype}"
                        yield name, _area_of(path), media["schema"]


def _bare(schema: dict[str, Any]) -> bool:
    """An object schema that says nothing of its members: no client can be made from it."""
    return "$ref" not in schema and not (
        schema.keys() & {"properties", "additionalProperties", "oneOf", "anyOf", "allOf"}
    )


def test_every_2xx_json_answer_names_a_component_schema() -> None:
    """Each JSON body of a 2xx answer is a ``$ref`` to a named schema in
    ``components/schemas``, and no named schema is a bare object. A route added later
    without its schemas is caught here, named with the area (its openapi.py) that lacks
    them."""
    unnamed = [f"{name} ({area})" for name, area, s in _json_2xx() if "$ref" not in s]
    assert unnamed == []
    named = SPEC["components"]["schemas"]
    bare = [
        name for name, schema in named.items() if schema.get("type") == "object" and _bare(schema)
    ]
    assert bare == []
    # Every name a body refers to exists.
    for _, area, schema in _json_2xx():
        assert schema["$ref"].removeprefix("#/components/schemas/") in named, (area, schema)


@pytest.mark.parametrize("schema", [{"type": "object"}, {"type": "object", "required": ["a"]}])
def test_a_bare_object_is_caught(schema: dict[str, Any]) -> None:
    assert _bare(schema)
    assert not _bare({"$ref": "#/components/schemas/Receipt"})


def test_the_check_refuses_a_body_that_breaks_its_schema() -> None:
    """The check is not vacuous: a closed shape refuses a member it does not name, a
    missing member and a wrong type, through the references."""
    receipt = {"index": 1, "leaf_hash": "AA==", "checkpoint": "o\n1\n" + "A" * 43 + "=\n"}
    good = {
        "jti": "j",
        "sub": "pat:x",
        "entry": "AA==",
        "receipt": {**receipt, "inclusion_proof": []},
    }
    check_body("GET", "/v1/attestations/j/receipt", 200, "application/json", good)
    for bad in (
        {**good, "extra": 1},
        {**good, "receipt": receipt},
        {**good, "receipt": {**good["receipt"], "index": "1"}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            check_body("GET", "/v1/attestations/j/receipt", 200, "application/json", bad)


async def test_the_supply_answers_are_valid_against_their_schemas(
    client: Client, config: Config
) -> None:
    """A unit commissioned, packed, shipped in its case, received, then recalled: every
    answer, including a repeated document and the custody of a unit moved inside its case
    (its ``moved_proof``)."""
    rec = Recorder(client)
    w = await Supply.make(client, config.data_dir)
    maker = await w.party("manufacturer", 614141000000)
    dist = await w.party("distributor", 401234500000)
    first = sign(maker.holder, document(commission([sgtin("V1"), sgtin("V2")])))
    assert (await w.post(maker, jws=first)).status == 201
    assert (await w.post(maker, jws=first)).status == 200  # the same document again
    await w.ok(maker, pack(sscc(9), [sgtin("V1")]))
    await w.ok(maker, ship([sscc(9)], dist.gln))
    await w.ok(dist, receive([sscc(9)]))
    status, body = await w.item(dist.holder, dist.token, sgtin("V1"))
    assert status == 200 and any("moved_proof" in e for e in body["events"])
    await w.ok(maker, recall([sgtin("V1")]))
    path = f"/v1/supply/items/{quote(sgtin('nothing-here'), safe='')}"
    assert (await call(client, "GET", path, dist.holder, dist.token)).status == 200
    checked = list(rec.checked())
    assert {"POST /v1/supply/events 201", "POST /v1/supply/events 200"} <= set(checked)
    assert "GET /v1/supply/items/{path} 200" in checked
