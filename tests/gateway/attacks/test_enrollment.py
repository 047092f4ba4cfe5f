"""Invites and enrollment: single use, no oracle, who may invite whom, key checks.

See world.py: every refusal is problem+json and, for 401/403, an auth.refused ledger
event that never contains the credential."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import ClientResponse
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey

from tests.gateway.attacks.world import (
    BAD_NPI,
    DEVICE_FIELDS,
    NPI,
    World,
    assert_nothing_recorded,
    assert_refusal_recorded,
    entries,
    flush_refusals,
    ledger_size,
    private_d,
    problem,
)
from tests.gateway.idclient import (
    Holder,
    b64u,
    call,
    get_token,
    invite_and_enroll,
)


# -- enrollment and invites -----------------------------------------------------------------
async def _invite(w: World, by: Holder, token: str, **body: Any) -> ClientResponse:
    return await call(w.client, "POST", "/v1/invites", by, token, json=body)


async def _new_invite(w: World, **body: Any) -> str:
    resp = await _invite(w, w.adm, w.adm_token, **{"role": "patient", **body})
    out = await resp.json()
    assert resp.status == 201, out
    return str(out["invite"])


async def _enroll_raw(w: World, invite: str, jwk: Any) -> ClientResponse:
    return await w.client.post("/v1/enroll", json={"invite": invite, "jwk": jwk})


async def test_invalid_invites_are_indistinguishable(world: World) -> None:
    """Reused, expired, unknown and overlong codes: one problem type, one detail."""
    w = world
    used = await _new_invite(w)
    assert (await _enroll_raw(w, used, w.holder().jwk)).status == 201
    expired = await _new_invite(w, ttl=60)
    w.clock.t += 60
    unknown = secrets.token_urlsafe(32)
    bodies = []
    for code in (used, expired, unknown, "x" * 129):
        before = await ledger_size(w.client)
        resp = await _enroll_raw(w, code, w.holder().jwk)
        body = await problem(resp, 400, "invalid-invite")
        bodies.append(body)
        await assert_refusal_recorded(
            w.client,
            before,
            route="/v1/enroll",
            method="POST",
            status=400,
            problem="invalid-invite",
            credentials=(code,),
        )
    assert all(b == bodies[0] for b in bodies), bodies
    assert set(bodies[0]) <= {"type", "title", "status", "detail"}


async def test_invite_expires_exactly_at_its_ttl(world: World) -> None:
    w = world
    code = await _new_invite(w, ttl=60)
    w.clock.t += 59
    assert (await _enroll_raw(w, code, w.holder().jwk)).status == 201


async def test_invite_code_never_reaches_the_ledger(world: World) -> None:
    w = world
    code = await _new_invite(w)
    assert (await _enroll_raw(w, code, w.holder().jwk)).status == 201
    raw = b"".join(r for _, r in await entries(w.client))
    assert code.encode() not in raw
    assert hashlib.sha256(code.encode()).hexdigest().encode() not in raw


async def _role_holder(w: World, role: str) -> tuple[Holder, str]:
    if role == "patient":
        return w.pat, w.pat_token
    extra: dict[str, Any] = {}
    enroll_extra = None
    if role == "provider":
        extra["npi"] = NPI
    by, by_token = w.adm, w.adm_token
    if role == "device":
        # The patient registers their own device (an admin holds no consent to do it).
        extra["patient"] = w.pat.sub
        enroll_extra = DEVICE_FIELDS
        by, by_token = w.pat, w.pat_token
    h = await invite_and_enroll(
        w.client, by, by_token, role, w.holder(), enroll_extra=enroll_extra, **extra
    )
    return h, await get_token(w.client, h)


FORBIDDEN_INVITES = [
    ("patient", {"role": "patient"}),
    ("patient", {"role": "admin"}),
    ("device", {"role": "device", "patient": "pat:" + "1" * 32}),
    ("auditor", {"role": "patient"}),
    ("provider", {"role": "provider", "npi": NPI}),
    ("provider", {"role": "admin"}),
    ("provider", {"role": "auditor"}),
]


@pytest.mark.parametrize(
    ("inviter", "body"),
    FORBIDDEN_INVITES,
    ids=[f"{r}-invites-{b['role']}" for r, b in FORBIDDEN_INVITES],
)
async def test_forbidden_invites(world: World, inviter: str, body: dict[str, Any]) -> None:
    w = world
    h, token = await _role_holder(w, inviter)
    before = await ledger_size(w.client)
    resp = await _invite(w, h, token, **body)
    await problem(resp, 403, "forbidden")
    await assert_refusal_recorded(
        w.client,
        before,
        route="/v1/invites",
        method="POST",
        status=403,
        problem="forbidden",
        actor=h.sub,
        credentials=(token,),
    )


BAD_INVITES = {
    "provider-without-npi": {"role": "provider"},
    "provider-npi-fails-luhn": {"role": "provider", "npi": BAD_NPI},
    "provider-npi-nine-digits": {"role": "provider", "npi": NPI[:9]},
    "provider-npi-as-number": {"role": "provider", "npi": int(NPI)},
    "device-without-patient": {"role": "device"},
    "device-patient-malformed": {"role": "device", "patient": "pat:xyz"},
    "device-patient-not-a-patient": {"role": "device", "patient": "prov:" + "1" * 32},
    "unknown-role": {"role": "root"},
    "unknown-field": {"role": "patient", "scope": "revoke"},
    "ttl-too-long": {"role": "patient", "ttl": 30 * 86400},
    "ttl-too-short": {"role": "patient", "ttl": 59},
    "ttl-boolean": {"role": "patient", "ttl": True},
    "display-name-markup": {"role": "patient", "display_name": "<script>"},
}


@pytest.mark.parametrize("case", list(BAD_INVITES))
async def test_malformed_invites_are_400(world: World, case: str) -> None:
    w = world
    before = await ledger_size(w.client)
    resp = await _invite(w, w.adm, w.adm_token, **BAD_INVITES[case])
    await problem(resp, 400, "bad-request")
    await assert_nothing_recorded(w.client, before)


async def test_provider_invite_with_valid_npi_is_accepted(world: World) -> None:
    w = world
    resp = await _invite(w, w.adm, w.adm_token, role="provider", npi=NPI)
    assert resp.status == 201, await resp.text()


def _okp(crv: str, raw: bytes) -> dict[str, str]:
    return {"kty": "OKP", "crv": crv, "x": b64u(raw)}


def _ec_jwk(curve: ec.EllipticCurve, crv: str, size: int) -> dict[str, str]:
    n = ec.generate_private_key(curve).public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": crv,
        "x": b64u(n.x.to_bytes(size, "big")),
        "y": b64u(n.y.to_bytes(size, "big")),
    }


def _rsa_jwk() -> dict[str, str]:
    n = rsa.generate_private_key(65537, 2048).public_key().public_numbers()
    return {"kty": "RSA", "n": b64u(n.n.to_bytes(256, "big")), "e": "AQAB"}


def _raw_public(key: Any) -> bytes:
    out: bytes = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return out


def _with_d() -> dict[str, str]:
    h = Holder()
    return {**h.jwk, "d": private_d(h)}


def _off_curve() -> dict[str, str]:
    jwk = Holder("ES256").jwk
    y = bytearray(base64.urlsafe_b64decode(jwk["y"] + "="))
    y[-1] ^= 1
    return {**jwk, "y": b64u(bytes(y))}


BAD_KEYS: dict[str, Callable[[], Any]] = {
    "private-okp-with-d": _with_d,
    "private-ec-with-d": lambda: {**Holder("ES256").jwk, "d": b64u(b"\1" * 32)},
    "rsa": _rsa_jwk,
    "secp256k1": lambda: _ec_jwk(ec.SECP256K1(), "secp256k1", 32),
    "p-384": lambda: _ec_jwk(ec.SECP384R1(), "P-384", 48),
    "x25519": lambda: _okp("X25519", _raw_public(x25519.X25519PrivateKey.generate())),
    "x448": lambda: _okp("X448", _raw_public(x448.X448PrivateKey.generate())),
    "ed448": lambda: _okp("Ed448", _raw_public(Ed448PrivateKey.generate())),
    "oct": lambda: {"kty": "oct", "k": b64u(b"k" * 32)},
    "p-256-off-curve": _off_curve,
    "ed25519-short-x": lambda: _okp("Ed25519", b"\1" * 31),
    "ed25519-padded-x": lambda: {**Holder().jwk, "x": Holder().jwk["x"] + "="},
    "ed25519-alg-es256": lambda: {**Holder().jwk, "alg": "ES256"},
    "jwk-a-string": lambda: json.dumps(Holder().jwk),
    "jwk-missing": lambda: None,
    "jwk-huge": lambda: {**Holder().jwk, "kid": "k" * 2000},
}


@pytest.mark.parametrize("case", list(BAD_KEYS))
async def test_enroll_refuses_unsupported_keys_without_burning_the_invite(
    world: World, case: str
) -> None:
    w = world
    code = await _new_invite(w)
    before = await ledger_size(w.client)
    resp = await _enroll_raw(w, code, BAD_KEYS[case]())
    await problem(resp, 400, "invalid-key")
    await assert_nothing_recorded(w.client, before)
    # The key is checked before the invite is redeemed: the invite still works.
    assert (await _enroll_raw(w, code, w.holder().jwk)).status == 201


async def test_same_public_key_cannot_enroll_twice(world: World) -> None:
    """One key, one identity: a second enrollment of a key is a 409, for either key type."""
    w = world
    for h in (w.holder(), w.holder("ES256")):
        assert (await _enroll_raw(w, await _new_invite(w), h.jwk)).status == 201
        code = await _new_invite(w)
        before = await ledger_size(w.client)
        resp = await _enroll_raw(w, code, h.jwk)
        await problem(resp, 409, "conflict")
        await assert_nothing_recorded(w.client, before)
    # Not even as another role, nor with the already-enrolled admin key.
    resp = await _enroll_raw(w, await _new_invite(w, role="auditor"), w.adm.jwk)
    await problem(resp, 409, "conflict")


DEVICE_FIELD_ERRORS = {
    "serial-missing": {"model": "Oxi 2"},
    "serial-markup": {"serial": "<x>", "model": "Oxi 2"},
    "model-not-a-string": {"serial": "SN-1", "model": 2},
}


@pytest.mark.parametrize("case", list(DEVICE_FIELD_ERRORS))
async def test_device_enrollment_needs_device_fields(world: World, case: str) -> None:
    w = world
    resp = await _invite(w, w.pat, w.pat_token, role="device", patient=w.pat.sub)
    code = (await resp.json())["invite"]
    body = {"invite": code, "jwk": w.holder().jwk, **DEVICE_FIELD_ERRORS[case]}
    await problem(await w.client.post("/v1/enroll", json=body), 400, "bad-request")


async def test_refused_device_enrollment_does_not_burn_the_invite(world: World) -> None:
    w = world
    resp = await _invite(w, w.pat, w.pat_token, role="device", patient=w.pat.sub)
    code = (await resp.json())["invite"]
    h = w.holder()
    bad = {"invite": code, "jwk": h.jwk, "serial": "<x>", "model": "Oxi 2"}
    await problem(await w.client.post("/v1/enroll", json=bad), 400, "bad-request")
    good = await w.client.post("/v1/enroll", json={"invite": code, "jwk": h.jwk, **DEVICE_FIELDS})
    assert good.status == 201, await good.text()


# -- registering a device is an access to its patient -------------------------------------
# A device writes into its patient's record, so inviting one takes the patient themself or
# the patient's `devices` consent to the inviter, at invite time and again at redemption;
# each refusal is a consent.refused event about the patient (in their access report).


async def _provider(w: World) -> tuple[Holder, str]:
    h = await invite_and_enroll(w.client, w.adm, w.adm_token, "provider", w.holder(), npi=NPI)
    return h, await get_token(w.client, h)


async def _patient(w: World) -> tuple[Holder, str]:
    h = await invite_and_enroll(w.client, w.adm, w.adm_token, "patient", w.holder())
    return h, await get_token(w.client, h)


def _until(w: World, seconds: int) -> str:
    t = dt.datetime.fromtimestamp(w.now + seconds, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


async def _consent(w: World, grantee: str, scopes: list[str], seconds: int = 3600) -> str:
    body = {"grantee": grantee, "scopes": scopes, "until": _until(w, seconds)}
    resp = await call(w.client, "POST", "/v1/consents", w.pat, w.pat_token, json=body)
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["id"])


async def _revoke_consent(w: World, consent: str) -> None:
    resp = await call(w.client, "DELETE", f"/v1/consents/{consent}", w.pat, w.pat_token)
    assert resp.status == 200, await resp.text()


async def _enroll_device(w: World, code: str, h: Holder | None = None) -> ClientResponse:
    body = {"invite": code, "jwk": (h or w.holder()).jwk, **DEVICE_FIELDS}
    return await w.client.post("/v1/enroll", json=body)


async def _types(w: World, before: int) -> list[str]:
    return [e["type"] for e, _ in await entries(w.client, before)]


async def _refused_device_invite(w: World, by: Holder, token: str, patient: str) -> None:
    """403, one consent.refused about ``patient`` naming ``by``, and no invite made."""
    before = await ledger_size(w.client)
    resp = await _invite(w, by, token, role="device", patient=patient)
    await problem(resp, 403, "forbidden")
    new = [e for e, _ in await entries(w.client, before)]
    assert [e["type"] for e in new] == ["consent.refused", "auth.refused"], new
    refused = new[0]
    assert (refused["actor"], refused["subject"]) == (by.sub, patient)
    assert refused["data"] == {"scope": "devices", "purpose": "treatment"}


async def test_provider_without_consent_cannot_register_a_device(world: World) -> None:
    """The attack: no consent, no relationship, yet a device reporting into A's record."""
    w = world
    prov, prov_t = await _provider(w)
    await _refused_device_invite(w, prov, prov_t, w.pat.sub)
    # Consent to everything else is not consent to register devices.
    await _consent(w, prov.sub, ["call", "vitals.read", "vitals.stream"])
    await _refused_device_invite(w, prov, prov_t, w.pat.sub)


async def test_provider_with_devices_consent_registers_a_device(world: World) -> None:
    w = world
    prov, prov_t = await _provider(w)
    consent = await _consent(w, prov.sub, ["devices"])
    before = await ledger_size(w.client)
    resp = await _invite(w, prov, prov_t, role="device", patient=w.pat.sub)
    assert resp.status == 201, await resp.text()
    new = [e for e, _ in await entries(w.client, before)]
    assert [e["type"] for e in new] == ["consent.used", "identity.invite_created"]
    assert new[0]["data"] == {"scope": "devices", "purpose": "treatment", "consent": consent}
    assert new[0]["actor"] == new[1]["actor"] == prov.sub
    # Redeemed while the consent stands: the enrollment names the consent it relied on,
    # and the use is not recorded a second time.
    before = await ledger_size(w.client)
    enrolled = await _enroll_device(w, (await resp.json())["invite"])
    assert enrolled.status == 201, await enrolled.text()
    new = [e for e, _ in await entries(w.client, before)]
    assert [e["type"] for e in new] == ["identity.enrolled"]
    data = new[0]["data"]
    assert (data["patient"], data["invited_by"], data["consent"]) == (w.pat.sub, prov.sub, consent)
    # The patient's access report shows who registered it, on what consent.
    report = await call(
        w.client, "GET", f"/v1/patients/{w.pat.sub}/access-report", w.pat, w.pat_token
    )
    rows = [(a["who"], a["action"], a["consent"]) for a in (await report.json())["accesses"]]
    assert (prov.sub, "consent.used", consent) in rows
    assert (prov.sub, "identity.invite_created", None) in rows


async def test_consent_revoked_before_redemption_stops_the_enrollment(world: World) -> None:
    w = world
    prov, prov_t = await _provider(w)
    consent = await _consent(w, prov.sub, ["devices"])
    resp = await _invite(w, prov, prov_t, role="device", patient=w.pat.sub)
    assert resp.status == 201, await resp.text()
    code = (await resp.json())["invite"]
    await _revoke_consent(w, consent)
    before = await ledger_size(w.client)
    await problem(await _enroll_device(w, code), 403, "forbidden")
    new = [e for e, _ in await entries(w.client, before)]
    # The consent refusal names the inviter and the patient; the device enrolling holds no
    # credential yet, so its 403 is counted in its source's refusal summary.
    assert [e["type"] for e in new] == ["consent.refused"], new
    assert (new[0]["actor"], new[0]["subject"]) == (prov.sub, w.pat.sub)
    await flush_refusals(w.client)
    summaries = [e["data"] for e, _ in await entries(w.client, before + 1)]
    rows = [r for s in summaries for r in s["counts"]]
    assert [(r["route"], r["status"], r["count"]) for r in rows] == [("/v1/enroll", 403, 1)]
    assert new[0]["data"]["scope"] == "devices"
    # Not burnt by the refusal: a fresh consent lets the same invite through.
    await _consent(w, prov.sub, ["devices"])
    assert (await _enroll_device(w, code)).status == 201


async def test_expired_consent_registers_nothing(world: World) -> None:
    w = world
    prov, prov_t = await _provider(w)
    await _consent(w, prov.sub, ["devices"], seconds=600)
    resp = await _invite(w, prov, prov_t, role="device", patient=w.pat.sub)
    assert resp.status == 201, await resp.text()
    code = (await resp.json())["invite"]
    w.clock.t += 600  # the consent ends; the invite (24 h) does not
    await problem(await _enroll_device(w, code), 403, "forbidden")
    prov_t = await get_token(w.client, prov)
    await _refused_device_invite(w, prov, prov_t, w.pat.sub)


async def test_another_providers_consent_does_not_count(world: World) -> None:
    w = world
    prov, _ = await _provider(w)
    other, other_t = await _provider(w)
    await _consent(w, prov.sub, ["devices"])
    await _refused_device_invite(w, other, other_t, w.pat.sub)


async def test_consent_covers_only_the_patient_who_gave_it(world: World) -> None:
    w = world
    prov, prov_t = await _provider(w)
    await _consent(w, prov.sub, ["devices"])
    other, _ = await _patient(w)
    await _refused_device_invite(w, prov, prov_t, other.sub)


async def test_patient_registers_their_own_device(world: World) -> None:
    w = world
    before = await ledger_size(w.client)
    resp = await _invite(w, w.pat, w.pat_token, role="device", patient=w.pat.sub)
    assert resp.status == 201, await resp.text()
    # The patient's own action: no consent is used, so none is recorded.
    assert await _types(w, before) == ["identity.invite_created"]
    enrolled = await _enroll_device(w, (await resp.json())["invite"])
    assert enrolled.status == 201, await enrolled.text()
    assert (await enrolled.json())["role"] == "device"


async def test_patient_cannot_register_a_device_for_another_patient(world: World) -> None:
    w = world
    other, _ = await _patient(w)
    await _refused_device_invite(w, w.pat, w.pat_token, other.sub)


async def test_admin_cannot_register_a_device_for_a_patient(world: World) -> None:
    """Admins operate the gateway; they are not the patient's clinicians and hold no consent
    (grants name providers), so they register no devices: the patient or a consented
    provider does."""
    w = world
    await _refused_device_invite(w, w.adm, w.adm_token, w.pat.sub)
    body = {"grantee": w.adm.sub, "scopes": ["devices"], "until": _until(w, 3600)}
    resp = await call(w.client, "POST", "/v1/consents", w.pat, w.pat_token, json=body)
    await problem(resp, 400, "bad-request")


async def test_invite_of_a_revoked_inviter_is_void(world: World) -> None:
    """An invite carries its maker's authority: once the maker is revoked it enrolls no
    one, whatever it was for."""
    w = world
    prov, prov_t = await _provider(w)
    await _consent(w, prov.sub, ["devices"])
    device = await _invite(w, prov, prov_t, role="device", patient=w.pat.sub)
    patient = await _invite(w, prov, prov_t, role="patient")
    assert device.status == patient.status == 201
    resp = await call(
        w.client,
        "POST",
        "/v1/revocations",
        w.adm,
        w.adm_token,
        json={"sub": prov.sub, "reason": "key_compromise"},
    )
    assert resp.status == 200, await resp.text()
    await problem(await _enroll_device(w, (await device.json())["invite"]), 400, "invalid-invite")
    resp = await _enroll_raw(w, (await patient.json())["invite"], w.holder().jwk)
    await problem(resp, 400, "invalid-invite")


async def test_no_device_enrolls_for_a_revoked_patient(world: World) -> None:
    w = world
    prov, prov_t = await _provider(w)
    await _consent(w, prov.sub, ["devices"])
    resp = await _invite(w, prov, prov_t, role="device", patient=w.pat.sub)
    assert resp.status == 201, await resp.text()
    revoked = await call(
        w.client,
        "POST",
        "/v1/revocations",
        w.adm,
        w.adm_token,
        json={"sub": w.pat.sub, "reason": "left_the_practice"},
    )
    assert revoked.status == 200, await revoked.text()
    await problem(await _enroll_device(w, (await resp.json())["invite"]), 400, "invalid-invite")


# -- a self-declared display name -------------------------------------------------------------
NAME_ERRORS: dict[str, Any] = {
    "markup": "<img src=x onerror=alert(1)>",
    "looks-like-an-id": "prov:" + "0" * 32,
    "right-to-left-override": "Jane \u202eeoD",
    "control-character": "Jane\x00Doe",
    "blank": "   ",
    "too-long": "J" * 129,
    "not-a-string": ["Jane"],
}


@pytest.mark.parametrize("case", list(NAME_ERRORS))
async def test_a_bad_self_declared_name_is_refused_without_burning_the_invite(
    world: World, case: str
) -> None:
    w = world
    code = await _new_invite(w)
    h = w.holder()
    before = await ledger_size(w.client)
    bad = {"invite": code, "jwk": h.jwk, "display_name": NAME_ERRORS[case]}
    await problem(await w.client.post("/v1/enroll", json=bad), 400, "bad-request")
    await assert_nothing_recorded(w.client, before)
    good = await w.client.post("/v1/enroll", json={"invite": code, "jwk": h.jwk})
    assert good.status == 201, await good.text()


@pytest.mark.parametrize("invite", ["named", "device"])
async def test_no_self_declared_name_where_the_invite_says_who_it_is(
    world: World, invite: str
) -> None:
    """A named invite keeps the name its inviter gave; a device is named by its model."""
    w = world
    if invite == "named":
        code, extra = await _new_invite(w, display_name="Ada Lovelace"), {}
    else:
        resp = await _invite(w, w.pat, w.pat_token, role="device", patient=w.pat.sub)
        code, extra = (await resp.json())["invite"], DEVICE_FIELDS
    h = w.holder()
    bad = {"invite": code, "jwk": h.jwk, "display_name": "Dr Jane Doe", **extra}
    await problem(await w.client.post("/v1/enroll", json=bad), 400, "bad-request")
    good = await w.client.post("/v1/enroll", json={"invite": code, "jwk": h.jwk, **extra})
    assert good.status == 201, await good.text()


async def test_the_enroll_check_asks_for_a_name_only_where_needed_and_spends_nothing(
    world: World,
) -> None:
    w = world
    nameless, named = await _new_invite(w), await _new_invite(w, display_name="Ada Lovelace")
    resp = await _invite(w, w.pat, w.pat_token, role="device", patient=w.pat.sub)
    device = (await resp.json())["invite"]
    spent = await _new_invite(w)
    assert (await _enroll_raw(w, spent, w.holder().jwk)).status == 201
    before = await ledger_size(w.client)

    async def asks(code: str) -> Any:
        r = await w.client.post("/v1/enroll/check", json={"invite": code})
        assert r.status == 200, await r.text()
        return (await r.json())["asks"]

    assert await asks(nameless) == ["display_name"]
    assert await asks(named) == [] and await asks(device) == []
    await assert_nothing_recorded(w.client, before)
    # Unknown, spent and overlong codes get enrollment's one refusal, recorded as enrollment
    # records it (without the code): nothing about any invite is said.
    bodies = []
    for code in ("inv_" + "A" * 43, spent, "x" * 500):
        before = await ledger_size(w.client)
        r = await w.client.post("/v1/enroll/check", json={"invite": code})
        bodies.append(await problem(r, 400, "invalid-invite"))
        await assert_refusal_recorded(
            w.client,
            before,
            route="/v1/enroll/check",
            method="POST",
            status=400,
            problem="invalid-invite",
            credentials=(code,),
        )
    assert all(b == bodies[0] for b in bodies), bodies
    # Checking spends nothing.
    assert (await _enroll_raw(w, nameless, w.holder().jwk)).status == 201
    r = await w.client.post("/v1/enroll/check", json={"code": nameless})
    await problem(r, 400, "bad-request")
