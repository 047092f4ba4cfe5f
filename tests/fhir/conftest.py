"""The vitals test world (tests/gateway/vitals/world.py) on a gateway whose clock the test
holds, with an auditor, and helpers that call /fhir and validate what comes back."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.config import Config
from tests.gateway.conftest import _pg_schemas, config  # noqa: F401 (fixtures)
from tests.gateway.idclient import Holder, call, get_token, invite_and_enroll
from tests.gateway.vitals.world import World


class Clock:
    def __init__(self) -> None:
        self.t = float(int(time.time()))

    def __call__(self) -> float:
        return self.t


class FhirWorld(World):
    clock: Clock
    aud: Holder
    aud_t: str

    async def fhir(
        self, who: Holder, token: str, path: str, params: Any = None, **kw: Any
    ) -> tuple[int, Any, Any]:
        """GET /fhir/<path>: status, parsed body, response."""
        resp = await call(self.client, "GET", f"/fhir/{path}", who, token, params=params, **kw)
        return resp.status, await resp.json(content_type=None), resp


def validate(resource: dict[str, Any]) -> None:
    """Validate with fhir.resources' R4B models (R4B changed none of the resources served
    here from R4 4.0.1: Observation, AuditEvent, Consent, Provenance, Bundle,
    CapabilityStatement, OperationOutcome)."""
    from fhir.resources.R4B import get_fhir_model_class

    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def outcome(body: dict[str, Any], code: str) -> str:
    """The OperationOutcome's first issue's diagnostics, after checking its shape."""
    assert body["resourceType"] == "OperationOutcome", body
    validate(body)
    assert body["issue"][0]["code"] == code, body
    return str(body["issue"][0]["diagnostics"])


@pytest.fixture
async def w(aiohttp_client: Any, config: Config) -> FhirWorld:  # noqa: F811
    clock = Clock()
    client: TestClient[Any, Any] = await aiohttp_client(create_app(config, clock=clock))
    world = FhirWorld(client)
    world.now = clock  # type: ignore[method-assign]
    world.clock = clock
    await world.setup(config)
    world.aud = await invite_and_enroll(client, world.adm, world.adm_t, "auditor")
    world.aud_t = await get_token(client, world.aud)
    for h in (world.adm, world.prov, world.pat, world.other, world.dev, world.other_dev, world.aud):
        h.clock = clock
    return world
