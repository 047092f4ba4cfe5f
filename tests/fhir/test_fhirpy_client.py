"""A real FHIR client (fhirpy's async client) against the gateway's live test server: the
CapabilityStatement, search with each parameter, paging to the end with ``next``, reads by
id, and OperationOutcome errors as the client raises them. Its only addition is the DPoP
proof each request needs, made by an aiohttp client middleware."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import ForbiddenError, OperationOutcome, ResourceNotFound

from tests.fhir.conftest import FhirWorld, validate
from tests.gateway.idclient import Holder
from tests.gateway.vitals.world import batch, bp, hr, iso


def fhir_client(w: FhirWorld, holder: Holder, token: str) -> AsyncFHIRClient:
    async def dpop(req: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        # RFC 9449: htu is the URL without query; a fresh proof for every request.
        htu = str(req.url.with_query(None))
        req.headers["Authorization"] = f"DPoP {token}"
        req.headers["DPoP"] = holder.dpop(req.method, htu, token)
        return await handler(req)

    base = str(w.client.make_url("/fhir"))
    return AsyncFHIRClient(base, aiohttp_config={"middlewares": (dpop,)})


def _dict(resource: Any) -> dict[str, Any]:
    out: dict[str, Any] = resource.serialize()
    validate(out)
    return out


async def test_a_fhir_client_searches_pages_and_reads(w: FhirWorld) -> None:
    t0 = w.now() - 500
    for k in range(7):
        r = await w.send(batch([hr(60 + k, t0 + 10 * k), bp(120, 80 + k, t0 + 10 * k + 1)]))
        assert r.status == 201
    await w.grant(["vitals.read"])
    client = fhir_client(w, w.prov, w.prov_t)
    meta = await client.execute("metadata", method="get")
    validate(dict(meta))
    assert meta["fhirVersion"] == "4.0.1"
    served = {r["type"] for r in meta["rest"][0]["resource"]}
    assert served == {"Observation", "AuditEvent", "Consent", "Provenance"}

    obs = client.resources("Observation").search(patient=w.pat.sub)
    # Paging to the end through Bundle.link next, three at a time.
    everything = await obs.limit(3).fetch_all()
    assert len(everything) == 14
    assert len({o["id"] for o in everything}) == 14
    for o in everything:
        _dict(o)
    rates = await obs.search(code="8867-4").sort("-date").limit(2).fetch_all()
    assert [o["valueQuantity"]["value"] for o in rates] == [66, 65, 64, 63, 62, 61, 60]
    # Two date parameters, one reading a page: the next links keep both.
    window = obs.search(code="8867-4", date__ge=iso(t0 + 20), date__lt=iso(t0 + 50))
    window = await window.limit(1).fetch_all()
    assert [o["valueQuantity"]["value"] for o in window] == [62, 63, 64]
    panels = await obs.search(category="vital-signs", code="85354-9").fetch_all()
    assert len(panels) == 7
    # A read by id gives the same resource the search gave.
    one = await client.reference("Observation", everything[4]["id"]).to_resource()
    assert _dict(one) == _dict(everything[4])
    first = await obs.first()
    assert first is not None and first["id"] == everything[0]["id"]

    # Provenance and Consent through the same client.
    prov = await client.resources("Provenance").search(target=f"Observation/{one['id']}").fetch()
    assert len(prov) == 1 and _dict(prov[0])["agent"][0]["who"]["identifier"]["value"] == w.dev.sub
    consents = await client.resources("Consent").search(patient=w.pat.sub).fetch()
    assert [c["status"] for c in consents] == ["active"]

    # Errors arrive as OperationOutcome, which the client raises.
    with pytest.raises(ResourceNotFound):
        await client.reference("Observation", w.pat.sub[4:] + "-999-0").to_resource()
    with pytest.raises(OperationOutcome) as bad:
        await client.resources("Observation").search(patient=w.pat.sub, color="red").fetch()
    assert "color" in str(bad.value)
    with pytest.raises(ForbiddenError):
        await client.resources("Observation").search(patient=w.other.sub).fetch()
    with pytest.raises(ForbiddenError):
        await client.resources("AuditEvent").fetch()

    # The auditor's client reads the audit trail, page by page.
    auditor = fhir_client(w, w.aud, w.aud_t)
    used = await auditor.resources("AuditEvent").search(subtype="consent.used").limit(2).fetch_all()
    assert len(used) >= 7 + 4  # a consent use per search page and read above
    for e in used:
        assert _dict(e)["agent"][0]["who"]["identifier"]["value"] == w.prov.sub
