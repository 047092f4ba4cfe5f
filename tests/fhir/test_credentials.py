"""Every protected /fhir endpoint against expired, replayed, forged and misdirected
credentials, and a role that reaches nothing there: 401/403 as OperationOutcome."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.fhir.conftest import FhirWorld, outcome
from tests.gateway.vitals.world import batch, hr

ENDPOINTS = ["Observation", "Observation/{id}", "AuditEvent", "Consent", "Provenance"]


async def _setup(w: FhirWorld, which: str) -> tuple[str, dict[str, str], Any, str]:
    """(path, params, holder, token) of a call the holder may make."""
    r = await w.send(batch([hr(70, w.now() - 30)]))
    assert r.status == 201
    st, body, _ = await w.fhir(w.pat, w.pat_t, "Observation")
    assert st == 200, body
    oid = body["entry"][0]["resource"]["id"]
    if which == "Observation/{id}":
        return f"/fhir/Observation/{oid}", {}, w.pat, w.pat_t
    if which == "Provenance":
        return "/fhir/Provenance", {"target": f"Observation/{oid}"}, w.pat, w.pat_t
    if which == "AuditEvent":
        return "/fhir/AuditEvent", {"_count": "5"}, w.aud, w.aud_t
    return f"/fhir/{which}", {}, w.pat, w.pat_t


async def _get(w: FhirWorld, path: str, params: dict[str, str], token: str, proof: str) -> Any:
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
    r = await w.client.get(path, params=params, headers=headers)
    return r.status, await r.json(content_type=None)


@pytest.mark.parametrize("which", ENDPOINTS)
async def test_replayed_forged_stolen_and_expired(w: FhirWorld, which: str) -> None:
    path, params, h, token = await _setup(w, which)
    url = str(w.client.make_url(path))
    proof = h.dpop("GET", url, token)
    st, body = await _get(w, path, params, token, proof)
    assert st == 200, body
    st, body = await _get(w, path, params, token, proof)  # the same proof again
    assert st == 401 and "replay" in outcome(body, "login").lower()
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = claims["scope"] + " system/Observation.rs"
    fake = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    forged = f"{head}.{fake}.{sig}"
    st, body = await _get(w, path, params, forged, h.dpop("GET", url, forged))
    assert st == 401
    outcome(body, "login")
    # A proof for another URL, and another holder's key.
    st, _ = await _get(w, path, params, token, h.dpop("GET", url + "x", token))
    assert st == 401
    st, _ = await _get(w, path, params, token, w.other.dpop("GET", url, token))
    assert st == 401
    w.clock.t += 300 + 30 + 1
    st, body = await _get(w, path, params, token, h.dpop("GET", url, token))
    assert st == 401 and "expired" in outcome(body, "login")


@pytest.mark.parametrize("which", ENDPOINTS)
async def test_a_device_and_an_admin_reach_nothing(w: FhirWorld, which: str) -> None:
    path, params, _, _ = await _setup(w, which)
    for who, tok in ((w.dev, w.dev_t), (w.adm, w.adm_t)):
        url = str(w.client.make_url(path))
        st, body = await _get(w, path, params, tok, who.dpop("GET", url, tok))
        assert st == 403, body
        assert "FHIR" in outcome(body, "forbidden")
