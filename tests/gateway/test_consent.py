"""Consent: patients grant, list and revoke; enforcement in one place; break-the-glass;
every grant, revocation, use and refusal on the ledger."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.app import create_app
from gateway.appkeys import CONSENT_GUARD
from gateway.auth.tokens import Forbidden, Principal
from gateway.config import Config
from tests.gateway.idclient import Holder, admin, call, get_token, invite_and_enroll

NPI = "1234567893"


class Clock:
    def __init__(self) -> None:
        import time

        self.t = float(int(time.time()))

    def __call__(self) -> float:
        return self.t


class World:
    def __init__(self, client: Any, clock: Clock) -> None:
        self.client, self.clock = client, clock

    async def setup(self, config: Config) -> World:
        c = self.client
        self.adm, self.adm_t = await admin(c, config.data_dir)
        for h in (self.adm,):
            h.clock = self.clock
        # Providers named by their invites, patients by themselves at enrollment.
        self.prov = await invite_and_enroll(
            c, self.adm, self.adm_t, "provider", npi=NPI, display_name="Dr Jane Doe"
        )
        self.prov2 = await invite_and_enroll(
            c, self.adm, self.adm_t, "provider", npi=NPI, display_name="Dr John Roe"
        )
        self.pat = await invite_and_enroll(
            c, self.adm, self.adm_t, "patient", enroll_extra={"display_name": "Ada Lovelace"}
        )
        self.other = await invite_and_enroll(
            c, self.adm, self.adm_t, "patient", enroll_extra={"display_name": "Grace Hopper"}
        )
        for h in (self.prov, self.prov2, self.pat, self.other):
            h.clock = self.clock
        self.prov_t = await get_token(c, self.prov)
        self.prov2_t = await get_token(c, self.prov2)
        self.pat_t = await get_token(c, self.pat)
        self.other_t = await get_token(c, self.other)
        return self

    def until(self, seconds: int) -> str:
        import datetime as dt

        return dt.datetime.fromtimestamp(self.clock.t + seconds, dt.UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )

    async def grant(self, grantee: str, scopes: list[str], seconds: int = 3600) -> Any:
        r = await call(
            self.client,
            "POST",
            "/v1/consents",
            self.pat,
            self.pat_t,
            json={"grantee": grantee, "scopes": scopes, "until": self.until(seconds)},
        )
        return r

    def principal(self, h: Holder, role: str) -> Principal:
        return Principal(h.sub, role, frozenset(), "jti", "jkt")

    async def authorize(self, h: Holder, role: str, scope: str) -> Any:
        guard = self.client.server.app[CONSENT_GUARD]
        return await guard.authorize(self.principal(h, role), self.pat.sub, scope)

    async def events(self, kind: str) -> list[dict[str, Any]]:
        size = (await (await self.client.get("/readyz")).json())["ledger_size"]
        out = []
        for i in range(size):
            e = (await (await self.client.get(f"/ledger/entries/{i}")).json())["event"]
            if e["type"] == kind:
                out.append(e)
        return out


@pytest.fixture
async def w(aiohttp_client: Any, config: Config) -> World:
    clock = Clock()
    client = await aiohttp_client(create_app(config, clock=clock))
    return await World(client, clock).setup(config)


async def test_grant_use_revoke_takes_effect_at_once(w: World) -> None:
    r = await w.grant(w.prov.sub, ["vitals.read", "call"])
    assert r.status == 201, await r.text()
    consent = await r.json()
    d = await w.authorize(w.prov, "provider", "vitals.read")
    assert (d.basis, d.ref) == ("consent", consent["id"])
    with pytest.raises(Forbidden):
        await w.authorize(w.prov, "provider", "vitals.stream")  # not granted
    with pytest.raises(Forbidden):
        await w.authorize(w.prov2, "provider", "vitals.read")  # another provider
    r = await call(w.client, "DELETE", f"/v1/consents/{consent['id']}", w.pat, w.pat_t)
    assert r.status == 200
    with pytest.raises(Forbidden):
        await w.authorize(w.prov, "provider", "vitals.read")
    used = await w.events("consent.used")
    refused = await w.events("consent.refused")
    assert used[-1]["data"]["consent"] == consent["id"] and used[-1]["actor"] == w.prov.sub
    assert len(refused) == 3 and all(e["subject"] == w.pat.sub for e in refused)
    assert [e["data"]["consent"] for e in await w.events("consent.revoked")] == [consent["id"]]


async def test_role_wide_grant_and_expiry(w: World) -> None:
    assert (await w.grant("role:provider", ["call"], seconds=600)).status == 201
    assert (await w.authorize(w.prov2, "provider", "call")).basis == "consent"
    w.clock.t += 600
    with pytest.raises(Forbidden):
        await w.authorize(w.prov2, "provider", "call")


async def test_lists(w: World) -> None:
    await w.grant(w.prov.sub, ["call"])
    await w.grant("role:provider", ["vitals.read"])
    mine = await (await call(w.client, "GET", "/v1/consents", w.pat, w.pat_t)).json()
    assert len(mine["consents"]) == 2
    prov2 = await (await call(w.client, "GET", "/v1/consents", w.prov2, w.prov2_t)).json()
    assert [c["grantee"] for c in prov2["consents"]] == ["role:provider"]
    other = await (await call(w.client, "GET", "/v1/consents", w.other, w.other_t)).json()
    assert other["consents"] == []
    r = await call(w.client, "GET", "/v1/consents", w.adm, w.adm_t)
    assert r.status == 403


async def test_lists_name_the_people_each_side_has_a_relation_with(w: World) -> None:
    """The patient sees the providers they consented to (revoked or not); a provider sees
    the patients whose active consent names them, and nobody for a consent to every
    provider or one that is over."""
    named = await (await w.grant(w.prov.sub, ["call"])).json()
    await w.grant("role:provider", ["vitals.read"])
    mine = await (await call(w.client, "GET", "/v1/consents", w.pat, w.pat_t)).json()
    assert mine["names"] == {w.prov.sub: "Dr Jane Doe"}
    prov = await (await call(w.client, "GET", "/v1/consents", w.prov, w.prov_t)).json()
    assert len(prov["consents"]) == 2 and prov["names"] == {w.pat.sub: "Ada Lovelace"}
    # Another provider sees the role-wide consent, not who gave it.
    prov2 = await (await call(w.client, "GET", "/v1/consents", w.prov2, w.prov2_t)).json()
    assert [c["patient"] for c in prov2["consents"]] == [w.pat.sub]
    assert prov2["names"] == {} and "Ada" not in str(prov2)
    other = await (await call(w.client, "GET", "/v1/consents", w.other, w.other_t)).json()
    assert other == {"consents": [], "names": {}}
    # Revoked: the provider no longer sees the name; the patient still sees whom it named.
    r = await call(w.client, "DELETE", f"/v1/consents/{named['id']}", w.pat, w.pat_t)
    assert r.status == 200
    prov = await (await call(w.client, "GET", "/v1/consents", w.prov, w.prov_t)).json()
    assert prov["names"] == {}
    mine = await (await call(w.client, "GET", "/v1/consents", w.pat, w.pat_t)).json()
    assert mine["names"] == {w.prov.sub: "Dr Jane Doe"}


async def test_break_the_glass_is_flagged_time_boxed_and_recorded(w: World, config: Config) -> None:
    with pytest.raises(Forbidden):
        await w.authorize(w.prov, "provider", "vitals.read")
    r = await call(
        w.client,
        "POST",
        "/v1/emergency-access",
        w.prov,
        w.prov_t,
        json={"patient": w.pat.sub, "reason": "unconscious in the ER, allergy check"},
    )
    assert r.status == 201, await r.text()
    d = await w.authorize(w.prov, "provider", "vitals.read")
    assert d.basis == "break_the_glass" and d.flagged
    ev = (await w.events("consent.emergency_access"))[-1]
    assert ev["data"]["flagged"] is True and "reason_commitment" in ev["data"]
    raw = str(ev)
    assert "allergy" not in raw
    assert (await w.events("consent.used"))[-1]["data"]["break_glass"] == d.ref
    w.clock.t += config.break_glass_minutes * 60
    with pytest.raises(Forbidden):
        await w.authorize(w.prov, "provider", "vitals.read")


@pytest.mark.parametrize(
    ("who", "path", "body", "status"),
    [
        ("prov", "/v1/consents", {"grantee": "role:provider", "scopes": ["call"]}, 403),
        ("adm", "/v1/consents", {"grantee": "role:provider", "scopes": ["call"]}, 403),
        ("pat", "/v1/emergency-access", {"patient": "PAT", "reason": "x" * 20}, 403),
        ("pat", "/v1/consents", {"grantee": "prov:" + "0" * 32, "scopes": ["call"]}, 400),
        ("pat", "/v1/consents", {"grantee": "role:provider", "scopes": ["admin"]}, 400),
        ("pat", "/v1/consents", {"grantee": "role:provider", "scopes": []}, 400),
        ("pat", "/v1/consents", {"grantee": "pat:" + "0" * 32, "scopes": ["call"]}, 400),
        ("prov", "/v1/emergency-access", {"patient": "PAT", "reason": "short"}, 400),
        ("prov", "/v1/emergency-access", {"patient": "pat:" + "0" * 32, "reason": "x" * 20}, 400),
    ],
)
async def test_refusals(w: World, who: str, path: str, body: dict[str, Any], status: int) -> None:
    holder, token = {"prov": (w.prov, w.prov_t), "adm": (w.adm, w.adm_t), "pat": (w.pat, w.pat_t)}[
        who
    ]
    body = {k: (w.pat.sub if v == "PAT" else v) for k, v in body.items()}
    if path == "/v1/consents":
        body.setdefault("until", w.until(3600))
    r = await call(w.client, "POST", path, holder, token, json=body)
    assert r.status == status, await r.text()
    assert r.content_type == "application/problem+json"


@pytest.mark.parametrize("seconds", [-10, 367 * 86400])
async def test_consent_end_must_be_future_and_bounded(w: World, seconds: int) -> None:
    assert (await w.grant(w.prov.sub, ["call"], seconds=seconds)).status == 400


@pytest.mark.parametrize(
    "until",
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "YESTERDAY", "WEEK", 1e300],
)
async def test_consent_end_is_an_rfc_3339_instant(w: World, until: Any) -> None:
    import datetime as dt

    if until == "WEEK":  # tomorrow as an ISO 8601 week date: fromisoformat took it
        y, wk, d = (
            dt.datetime.fromtimestamp(w.clock.t, dt.UTC) + dt.timedelta(days=1)
        ).isocalendar()
        until = f"{y}-W{wk:02d}-{d}T12:00:00Z"
    body = {"grantee": w.prov.sub, "scopes": ["call"], "until": until}
    r = await call(w.client, "POST", "/v1/consents", w.pat, w.pat_t, json=body)
    detail = (await r.json())["detail"]
    assert r.status == 400 and r.content_type == "application/problem+json", detail
    assert detail.startswith("until must be an RFC 3339 date-time"), detail


async def test_only_the_granting_patient_revokes(w: World) -> None:
    consent = await (await w.grant(w.prov.sub, ["call"])).json()
    r = await call(w.client, "DELETE", f"/v1/consents/{consent['id']}", w.other, w.other_t)
    assert r.status == 404
    r = await call(w.client, "DELETE", f"/v1/consents/{consent['id']}", w.pat, w.pat_t)
    assert r.status == 200
    r = await call(w.client, "DELETE", f"/v1/consents/{consent['id']}", w.pat, w.pat_t)
    assert r.status == 404


async def test_patients_own_data_needs_no_consent(w: World) -> None:
    d = await w.authorize(w.pat, "patient", "vitals.read")
    assert d.basis == "self"
    # Nothing is recorded for a patient reading their own data through the guard.
    assert await w.events("consent.used") == []


async def test_devices_is_a_scope_a_patient_grants(w: World) -> None:
    """Registering a monitoring device is its own scope: granted like the others, and no
    other scope stands in for it."""
    assert (await w.grant(w.prov.sub, ["call", "vitals.read", "vitals.stream"])).status == 201
    with pytest.raises(Forbidden):
        await w.authorize(w.prov, "provider", "devices")
    r = await w.grant(w.prov.sub, ["devices"])
    assert r.status == 201, await r.text()
    consent = await r.json()
    assert consent["scopes"] == ["devices"]
    d = await w.authorize(w.prov, "provider", "devices")
    assert (d.basis, d.ref) == ("consent", consent["id"])
    used = (await w.events("consent.used"))[-1]
    assert used["data"] == {"scope": "devices", "purpose": "treatment", "consent": consent["id"]}


async def test_break_the_glass_does_not_register_devices(w: World) -> None:
    """An emergency opens the record for reading, not for a device that would go on
    writing into it after the emergency is over."""
    r = await call(
        w.client,
        "POST",
        "/v1/emergency-access",
        w.prov,
        w.prov_t,
        json={"patient": w.pat.sub, "reason": "collapsed at home, needs a monitor"},
    )
    assert r.status == 201, await r.text()
    assert (await w.authorize(w.prov, "provider", "vitals.read")).flagged
    with pytest.raises(Forbidden):
        await w.authorize(w.prov, "provider", "devices")
    refused = (await w.events("consent.refused"))[-1]
    assert refused["actor"] == w.prov.sub and refused["data"]["scope"] == "devices"


async def test_no_break_the_glass_for_a_revoked_patient(w: World) -> None:
    """A revoked patient is answered like an unknown one: no emergency access is opened,
    nothing is recorded as an emergency."""
    r = await call(
        w.client,
        "POST",
        "/v1/revocations",
        w.adm,
        w.adm_t,
        json={"sub": w.pat.sub, "reason": "left_the_practice"},
    )
    assert r.status == 200, await r.text()
    body = {"patient": w.pat.sub, "reason": "unconscious in the ER, allergy check"}
    r = await call(w.client, "POST", "/v1/emergency-access", w.prov, w.prov_t, json=body)
    unknown = {"patient": "pat:" + "0" * 32, "reason": body["reason"]}
    u = await call(w.client, "POST", "/v1/emergency-access", w.prov, w.prov_t, json=unknown)
    assert r.status == 400, await r.text()
    assert r.content_type == "application/problem+json"
    assert (await r.json()) == (await u.json())
    assert await w.events("consent.emergency_access") == []
