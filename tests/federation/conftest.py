"""A world of two organizations and an independent witness, started for each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from tests.gateway.idclient import Holder, admin, get_token, invite_and_enroll
from tests.witness.gateways import WitnessServer

from .orgs import (
    Org,
    exchange,
    independent_witness,
    make_org,
    org_config,
    peer_token,
    peer_toml,
    witnessed_receipt,
)

NPI = "1234567893"


class World:
    """A and B witnessing each other, W witnessing both; people enrolled on :meth:`up`."""

    def __init__(self, root: Path, aiohttp_client: Any) -> None:
        self.root, self._client = root, aiohttp_client
        self.a, self.b = make_org(root, "a"), make_org(root, "b")
        self.w = independent_witness(root, "w.example/witness", self.a, self.b)
        self.servers: list[WitnessServer] = [self.w]

    @property
    def required(self) -> list[str]:
        """The witnesses A requires on B's checkpoints: its own and the independent one."""
        return [self.a.witness_vkey, self.w.vkey]

    async def start(
        self, org: Org, peer: Org, trust: str, extra: Sequence[WitnessServer] = (), **kw: Any
    ) -> None:
        witnesses = [*extra] if extra else [self.w]
        cfg = org_config(org, peer, witnesses, trust, **kw)
        org.client = await self._client(
            create_app(cfg, clock=org.clock), server_kwargs={"port": org.port}
        )

    async def up(self, *, tofu: bool = False, trust_a: str | None = None) -> World:
        await self.w.start()
        a, b = self.a, self.b
        await self.start(a, b, trust_a or peer_toml(b, self.required, 2, tofu=tofu))
        await self.start(b, a, peer_toml(a, [b.witness_vkey, self.w.vkey], 2))
        await self.people()
        return self

    async def people(self) -> None:
        a, b = self.a, self.b
        self.a_admin, self.a_admin_t = await admin(a.c, a.data)
        self.patient = await invite_and_enroll(a.c, self.a_admin, self.a_admin_t, "patient")
        self.patient_t = await get_token(a.c, self.patient)
        self.auditor = await invite_and_enroll(a.c, self.a_admin, self.a_admin_t, "auditor")
        self.b_admin, self.b_admin_t = await admin(b.c, b.data)
        self.provider = await invite_and_enroll(
            b.c, self.b_admin, self.b_admin_t, "provider", npi=NPI
        )

    async def b_token(self, holder: Holder | None = None, **kw: Any) -> tuple[str, str]:
        """A token of B meant for A too, and its receipt once A's required witnesses have
        cosigned it."""
        h = holder or self.provider
        token = await peer_token(self.b.c, h, kw.pop("resource", self.a.url), **kw)
        receipt = await witnessed_receipt(self.b.c, h, token, self.required, 2)
        return token, receipt

    async def accepted(self) -> dict[str, Any]:
        """The provider of B exchanges its token at A; A's answer."""
        token, receipt = await self.b_token()
        return await exchange(self.a.c, self.provider, token, receipt)


@pytest.fixture
async def world(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[World]:
    w = World(tmp_path, aiohttp_client)
    try:
        yield w
    finally:
        for server in w.servers:
            await server.stop()
