"""The attack matrix's table: one row per route of the app saying how it is reached, who
may call it, what body it reads and how another subject's data would be named; the world
the attacks run in; and one "not yours" check per route that acts on someone's data. The
tests are in ``test_matrix.py``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse, hdrs
from aiohttp.test_utils import TestClient, TestServer

from gateway.config import Config
from tests.gateway.attacks.world import (
    DEVICE_FIELDS,
    NPI,
    World,
    _world,
    claims_of,
    problem,
)
from tests.gateway.idclient import Holder, call, get_token, invite_and_enroll
from tests.gateway.vitals.world import batch, hr, sign

UNKNOWN = "0" * 32


# -- the world -----------------------------------------------------------------------------
@dataclasses.dataclass
class M:
    """The module's world: who is enrolled, their tokens, a call and a consent."""

    w: World
    people: dict[str, tuple[Holder, str]]
    sid: str  # a call the provider scheduled with the patient
    cid: str  # the patient's consent to the provider

    def who(self, name: str) -> tuple[Holder, str]:
        return self.people[name]

    def sub(self, name: str) -> str:
        return self.people[name][0].sub


async def _client(app: Any) -> TestClient[Any, Any]:
    c: TestClient[Any, Any] = TestClient(TestServer(app))
    await c.start_server()
    return c


def _config(tmp: Path) -> Config:
    config = Config(data_dir=tmp / "data", log_origin="test.example/telegate/log")
    # One world takes hundreds of refusals from one address: a per-source limit on them,
    # where the gateway has one, is not what this matrix tests (its own tests do).
    names = {f.name for f in dataclasses.fields(Config)}
    # Nor are the request limits (tests/overload): the matrix's one client is loopback.
    loose = {"refusal_burst": 1_000_000, "refusal_rate": 10_000.0, "rate_exempt_loopback": True}
    return dataclasses.replace(config, **{k: v for k, v in loose.items() if k in names})


def _party(n: int) -> dict[str, str]:
    from tests.supply.world import gln

    return {"gln": gln(n), "kind": "distributor", "display_name": f"Distributor {n}"}


async def build(tmp: Path) -> M:
    """The world: an admin, the patient and their provider (consent to calls and reads,
    a scheduled call), a provider without consent, another patient, an auditor, a device
    each, and a revoked subject of every calling role. Close ``m.w.client`` after."""
    w = await _world(_client, _config(tmp))
    c, adm, adm_t = w.client, w.adm, w.adm_token
    people = {"admin": (adm, adm_t), "patient": (w.pat, w.pat_token)}
    for name, role, extra in (
        ("provider", "provider", {"npi": NPI}),
        ("stranger", "provider", {"npi": NPI}),  # a provider the patient never consented to
        ("other", "patient", {}),
        ("auditor", "auditor", {}),
        ("party", "party", _party(1)),  # a supply-chain party (gateway/supply)
    ):
        h = await invite_and_enroll(c, adm, adm_t, role, w.holder(), **extra)
        people[name] = (h, await get_token(c, h))
    for name, pat in (("device", "patient"), ("other_device", "other")):
        owner, owner_t = people[pat]
        h = await invite_and_enroll(
            c, owner, owner_t, "device", w.holder(), DEVICE_FIELDS, patient=owner.sub
        )
        people[name] = (h, await get_token(c, h))
    # One revoked subject of each calling role, with a token taken before the revocation.
    for role in ("admin", "provider", "patient", "auditor", "device", "party"):
        if role == "device":
            h = await invite_and_enroll(
                c, w.pat, w.pat_token, "device", w.holder(), DEVICE_FIELDS, patient=w.pat.sub
            )
        else:
            extra = {"npi": NPI} if role == "provider" else _party(2) if role == "party" else {}
            h = await invite_and_enroll(c, adm, adm_t, role, w.holder(), **extra)
        people[f"revoked_{role}"] = (h, await get_token(c, h))
        body = {"sub": h.sub, "reason": "matrix"}
        r = await call(c, "POST", "/v1/revocations", adm, adm_t, json=body)
        assert r.status == 200, await r.text()
    until = dt.datetime.fromtimestamp(w.now + 86400, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    grant = {"grantee": people["provider"][0].sub, "scopes": ["call", "vitals.read"]}
    r = await call(c, "POST", "/v1/consents", w.pat, w.pat_token, json={**grant, "until": until})
    assert r.status == 201, await r.text()
    cid = (await r.json())["id"]
    prov, prov_t = people["provider"]
    r = await call(c, "POST", "/v1/sessions", prov, prov_t, json={"patient": w.pat.sub})
    assert r.status == 201, await r.text()
    return M(w, people, (await r.json())["id"], cid)


# -- requests --------------------------------------------------------------------------------
_BODIES = {
    "json": (b"{}", "application/json"),
    "form": (b"token=x", "application/x-www-form-urlencoded"),
    "jose": (b"x", "application/jose"),
}


async def send(
    m: M,
    method: str,
    path: str,
    caller: str | None,
    *,
    token: str | None = None,
    proof: str | None = None,
    body: str = "",
    data: Any = None,
    content_type: str | None = None,
) -> ClientResponse:
    """``method path`` as ``caller`` (None: no credentials) with a fresh proof, or with the
    ``token`` and ``proof`` given; the body of its kind unless ``data`` is given."""
    headers: dict[str, str] = {}
    if caller is not None:
        holder, own = m.who(caller)
        token = token or own
        headers["Authorization"] = f"DPoP {token}"
        headers["DPoP"] = proof or holder.dpop(method, m.w.url(path), token)
    if body:
        default, ctype = _BODIES[body]
        data = default if data is None else data
        headers[hdrs.CONTENT_TYPE] = content_type or ctype
    return await m.w.client.request(method, path, data=data, headers=headers)


async def json_of(resp: ClientResponse) -> Any:
    text = await resp.text()
    assert resp.status == 200, text
    return json.loads(text)


# -- "not yours": one check per route that acts on someone's data -----------------------------
Check = Callable[[M], Awaitable[None]]


async def _same_as_unknown(m: M, method: str, path: str, unknown: str, *callers: str) -> None:
    for caller in callers:
        theirs = await problem(await send(m, method, path, caller), 404)
        nothing = await problem(await send(m, method, unknown, caller), 404)
        assert theirs == nothing, (caller, theirs, nothing)


def _session_action(action: str) -> Check:
    async def check(m: M) -> None:
        path, unknown = f"/v1/sessions/{m.sid}{action}", f"/v1/sessions/{UNKNOWN}{action}"
        await _same_as_unknown(m, "POST" if action else "GET", path, unknown, "other", "stranger")

    return check


async def _receipt(m: M) -> None:
    jti = claims_of(m.who("other")[1])["jti"]
    unknown = f"/v1/attestations/{'A' * 24}/receipt"
    await _same_as_unknown(m, "GET", f"/v1/attestations/{jti}/receipt", unknown, "patient")


async def _access_report(m: M) -> None:
    path = f"/v1/patients/{m.sub('other')}/access-report"
    await problem(await send(m, "GET", path, "patient"), 403)


async def _consent_revoke(m: M) -> None:
    path, unknown = f"/v1/consents/{m.cid}", f"/v1/consents/{UNKNOWN}"
    await _same_as_unknown(m, "DELETE", path, unknown, "other")


async def _consent_list(m: M) -> None:
    for caller in ("other", "stranger"):
        listed = await json_of(await send(m, "GET", "/v1/consents", caller))
        assert m.cid not in {c["id"] for c in listed["consents"]}, caller


async def _session_list(m: M) -> None:
    for caller in ("other", "stranger"):
        listed = await json_of(await send(m, "GET", "/v1/sessions", caller))
        assert m.sid not in {s["id"] for s in listed["sessions"]}, caller


async def _schedule(m: M) -> None:
    body = json.dumps({"patient": m.sub("patient")}).encode()
    await problem(await send(m, "POST", "/v1/sessions", "stranger", body="json", data=body), 403)


async def _invite_device(m: M) -> None:
    body = json.dumps({"role": "device", "patient": m.sub("patient")}).encode()
    for caller in ("stranger", "other"):
        resp = await send(m, "POST", "/v1/invites", caller, body="json", data=body)
        await problem(resp, 403)


async def _read_vitals(m: M) -> None:
    for caller in ("stranger", "other"):
        path = f"/v1/patients/{m.sub('patient')}/vitals"
        await problem(await send(m, "GET", path, caller), 403)


async def _post_vitals(m: M) -> None:
    dev = m.who("other_device")[0]
    jws = sign(dev, batch([hr(70, time.time())], patient=m.sub("patient")))
    resp = await send(m, "POST", "/v1/vitals", "other_device", body="jose", data=jws.encode())
    await problem(resp, 403)


def _fhir_obs(m: M) -> str:
    """An Observation id in the patient's record that names no reading."""
    return f"{m.sub('patient').removeprefix('pat:')}-999999-0"


async def _fhir_read(m: M) -> None:
    for caller in ("stranger", "other"):
        search = f"/fhir/Observation?patient={m.sub('patient')}"
        for path in (search, f"/fhir/Observation/{_fhir_obs(m)}"):
            await problem(await send(m, "GET", path, caller), 403)
        prov = f"/fhir/Provenance?target=Observation/{_fhir_obs(m)}"
        await problem(await send(m, "GET", prov, caller), 403)


async def _fhir_audit(m: M) -> None:
    for query in (f"patient={m.sub('other')}", f"entity={m.sub('other')}"):
        await problem(await send(m, "GET", f"/fhir/AuditEvent?{query}", "patient"), 403)


async def _fhir_consent(m: M) -> None:
    path = f"/fhir/Consent?patient={m.sub('patient')}"
    await problem(await send(m, "GET", path, "other"), 403)
    listed = await json_of(await send(m, "GET", "/fhir/Consent", "stranger"))
    assert f"consent-{m.cid}" not in {e["resource"]["id"] for e in listed["entry"]}


# -- the table -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Route:
    """How a route is reached and what attacking it should give.

    ``auth``: ``dpop`` (a DPoP-bound token), ``public``, ``invite`` (enrollment),
    ``client`` (the token endpoint's client assertion) or ``ticket`` (the WebSocket).
    ``caller`` may call it; ``wrong`` is a caller whose role it refuses ("" when any role
    may, the route deciding by ownership instead). ``body`` is the kind it reads ("" none).
    ``path`` is a concrete path for the attacks, chosen so that a request that gets through
    authentication changes nothing. ``foreign`` checks another subject's data, or
    ``mine_only`` says why the route has no such case.
    """

    auth: str
    caller: str = ""
    wrong: str = ""
    body: str = ""
    path: Callable[[M], str] | None = None
    foreign: Check | None = None
    mine_only: str = ""


ROLE_WIDE = "role-wide by design: it acts on every subject, for the one role it admits"
OWN = "acts on the caller's own identity or record only: there is no one else's to name"


def _sid_path(action: str) -> Callable[[M], str]:
    return lambda m: f"/v1/sessions/{UNKNOWN}{action}"


MATRIX: dict[tuple[str, str], Route] = {
    ("GET", "/healthz"): Route("public"),
    ("GET", "/readyz"): Route("public"),
    ("GET", "/metrics"): Route("public"),
    ("GET", "/openapi.json"): Route("public"),
    ("GET", "/ledger/checkpoint"): Route("public"),
    ("GET", "/ledger/vkey"): Route("public"),
    ("GET", "/ledger/tile/{path}"): Route("public", path=lambda m: "/ledger/tile/0/000.p/1"),
    ("GET", "/ledger/proof/inclusion"): Route("public"),
    ("GET", "/ledger/proof/consistency"): Route("public"),
    ("GET", "/ledger/entries/{index}"): Route("public", path=lambda m: "/ledger/entries/0"),
    ("GET", "/.well-known/jwks.json"): Route("public"),
    ("GET", "/.well-known/smart-configuration"): Route("public"),
    ("GET", "/v1/status/{list}"): Route("public", path=lambda m: "/v1/status/1"),
    ("GET", "/console"): Route("public"),
    ("GET", "/me"): Route("public"),
    ("GET", "/enroll"): Route("public"),
    ("GET", "/call/{session}"): Route("public", path=lambda m: f"/call/{UNKNOWN}"),
    ("GET", "/web/{kind}/{name}"): Route("public", path=lambda m: "/web/js/none.js"),
    ("POST", "/v1/enroll"): Route("invite", body="json"),
    ("POST", "/v1/enroll/check"): Route("invite", body="json"),
    ("POST", "/oauth/token"): Route("client", body="form"),
    ("GET", "/v1/sessions/{id}/ws"): Route("ticket", path=lambda m: f"/v1/sessions/{m.sid}/ws"),
    ("POST", "/v1/invites"): Route("dpop", "patient", "auditor", "json", foreign=_invite_device),
    ("POST", "/oauth/introspect"): Route("dpop", "auditor", "patient", "form", mine_only=ROLE_WIDE),
    ("GET", "/v1/attestations/{jti}/receipt"): Route(
        "dpop",
        "patient",
        path=lambda m: f"/v1/attestations/{claims_of(m.who('patient')[1])['jti']}/receipt",
        foreign=_receipt,
    ),
    ("POST", "/v1/revocations"): Route("dpop", "admin", "provider", "json", mine_only=ROLE_WIDE),
    ("GET", "/v1/me"): Route("dpop", "patient", mine_only=OWN),
    ("GET", "/v1/audit/events"): Route("dpop", "auditor", "admin", mine_only=ROLE_WIDE),
    ("GET", "/v1/audit/export"): Route("dpop", "auditor", "admin", mine_only=ROLE_WIDE),
    ("GET", "/v1/patients/{patient}/access-report"): Route(
        "dpop",
        "patient",
        "provider",
        path=lambda m: f"/v1/patients/{m.sub('patient')}/access-report",
        foreign=_access_report,
    ),
    ("POST", "/v1/consents"): Route("dpop", "patient", "provider", "json", mine_only=OWN),
    ("GET", "/v1/consents"): Route("dpop", "patient", "admin", foreign=_consent_list),
    ("DELETE", "/v1/consents/{id}"): Route(
        "dpop",
        "patient",
        "provider",
        path=lambda m: f"/v1/consents/{UNKNOWN}",
        foreign=_consent_revoke,
    ),
    ("POST", "/v1/emergency-access"): Route(
        "dpop",
        "provider",
        "patient",
        "json",
        mine_only="break-the-glass names any patient by design (flagged, time-boxed, audited)",
    ),
    ("GET", "/v1/turn-credentials"): Route("dpop", "patient", "device", mine_only=OWN),
    ("POST", "/v1/sessions"): Route("dpop", "provider", "auditor", "json", foreign=_schedule),
    ("GET", "/v1/sessions"): Route("dpop", "patient", "admin", foreign=_session_list),
    ("GET", "/v1/sessions/waiting"): Route(
        "dpop",
        "provider",
        "patient",
        mine_only="the provider's own waiting room: the query names the caller",
    ),
    ("GET", "/v1/sessions/{id}"): Route(
        "dpop", "patient", path=_sid_path(""), foreign=_session_action("")
    ),
    ("POST", "/v1/sessions/{id}/ticket"): Route(
        "dpop", "patient", path=_sid_path("/ticket"), foreign=_session_action("/ticket")
    ),
    ("POST", "/v1/sessions/{id}/admit"): Route(
        "dpop", "provider", path=_sid_path("/admit"), foreign=_session_action("/admit")
    ),
    ("POST", "/v1/sessions/{id}/end"): Route(
        "dpop", "provider", path=_sid_path("/end"), foreign=_session_action("/end")
    ),
    ("POST", "/v1/sessions/{id}/no-show"): Route(
        "dpop", "provider", path=_sid_path("/no-show"), foreign=_session_action("/no-show")
    ),
    ("POST", "/v1/vitals"): Route("dpop", "device", "patient", "jose", foreign=_post_vitals),
    # Incentive programs (gateway/incentives): a patient's own standing, evaluations and
    # rewards, always the caller's; programs themselves name no one.
    ("POST", "/v1/programs"): Route(
        "dpop",
        "admin",
        "patient",
        "json",
        mine_only="a program names no one's data: it is published for every patient (or a "
        "provider's own) by design",
    ),
    ("GET", "/v1/programs"): Route(
        "dpop",
        "patient",
        mine_only="published programs hold no one's data: every enrolled subject reads them",
    ),
    ("POST", "/v1/programs/{id}/enroll"): Route(
        "dpop",
        "patient",
        "provider",
        "json",
        path=lambda m: f"/v1/programs/{UNKNOWN}/enroll",
        mine_only=OWN,
    ),
    ("GET", "/v1/programs/{id}/progress"): Route(
        "dpop",
        "patient",
        "provider",
        path=lambda m: f"/v1/programs/{UNKNOWN}/progress",
        mine_only=OWN,
    ),
    ("POST", "/v1/programs/{id}/evaluate"): Route(
        "dpop",
        "patient",
        "provider",
        "json",
        path=lambda m: f"/v1/programs/{UNKNOWN}/evaluate",
        mine_only=OWN,
    ),
    ("GET", "/v1/programs/{id}/evaluations/{period}"): Route(
        "dpop",
        "patient",
        "provider",
        path=lambda m: f"/v1/programs/{UNKNOWN}/evaluations/0",
        mine_only=OWN,
    ),
    ("GET", "/v1/rewards"): Route("dpop", "patient", "provider", mine_only=OWN),
    ("POST", "/v1/rewards/{id}/revoke"): Route(
        "dpop",
        "admin",
        "patient",
        path=lambda m: f"/v1/rewards/{UNKNOWN}/revoke",
        mine_only=ROLE_WIDE,
    ),
    ("GET", "/v1/rewards/status"): Route("public"),
    # The supply chain (gateway/supply): custody rules, not ownership, decide whose units a
    # party's events may move (409 and an audited refusal: tests/supply).
    ("POST", "/v1/supply/events"): Route(
        "dpop",
        "party",
        "patient",
        "jose",
        mine_only="a party submits its own signed events; the custody rules refuse moving "
        "another's units (tests/supply/test_chain.py)",
    ),
    ("GET", "/v1/supply/items/{path}"): Route(
        "dpop",
        "party",
        "patient",
        path=lambda m: "/v1/supply/items/01/09506000134352/21/MATRIX1",
        mine_only="a unit's custody is no one's personal data: every role that handles "
        "products reads it by design",
    ),
    ("GET", "/v1/patients/{id}/vitals"): Route(
        "dpop",
        "patient",
        "admin",
        path=lambda m: f"/v1/patients/{m.sub('patient')}/vitals",
        foreign=_read_vitals,
    ),
    ("POST", "/v1/patients/{id}/erase"): Route(
        "dpop",
        "admin",
        "patient",
        "json",
        path=lambda m: f"/v1/patients/{m.sub('patient')}/erase",
        mine_only=ROLE_WIDE,
    ),
    # The FHIR API (gateway/fhir): errors are OperationOutcome, checked by ``problem``.
    ("GET", "/fhir/metadata"): Route("public"),
    ("GET", "/fhir/.well-known/smart-configuration"): Route("public"),
    ("GET", "/fhir/Observation"): Route("dpop", "patient", "admin", foreign=_fhir_read),
    ("GET", "/fhir/Observation/{id}"): Route(
        "dpop",
        "patient",
        "admin",
        path=lambda m: f"/fhir/Observation/{_fhir_obs(m)}",
        foreign=_fhir_read,
    ),
    ("GET", "/fhir/Provenance"): Route("dpop", "patient", "device", foreign=_fhir_read),
    ("GET", "/fhir/AuditEvent"): Route("dpop", "auditor", "provider", foreign=_fhir_audit),
    ("GET", "/fhir/Consent"): Route("dpop", "patient", "admin", foreign=_fhir_consent),
}
