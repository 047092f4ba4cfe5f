"""A small world for vitals tests: an admin, a patient with a device they registered,
another patient with theirs, a provider; helpers to sign batches and make readings."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from typing import Any

import jwt

from gateway.auth.jwk import HolderKey
from gateway.config import Config
from tests.gateway.idclient import Client, Holder, admin, call, get_token, invite_and_enroll

NPI = "1234567893"
DEVICE = {"serial": "SN-0001", "model": "TG-Monitor 2"}


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def sign(holder: Holder, payload: Any, *, typ: str = "vitals+json", **header: Any) -> str:
    """A compact JWS of ``payload`` (a dict, or bytes as is) by ``holder``'s key."""
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    kid = HolderKey.from_jwk(holder.jwk).jkt
    return jwt.api_jws.PyJWS().encode(
        raw, holder.key, algorithm=holder.alg, headers={"typ": typ, "kid": kid, **header}
    )


def batch(
    readings: list[dict[str, Any]], batch_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {"batch_id": batch_id or secrets.token_hex(8), "readings": readings, **extra}


def hr(value: float, t: float, unit: str = "/min") -> dict[str, Any]:
    return {"code": "8867-4", "unit": unit, "value": value, "time": iso(t)}


def bp(sys: float, dia: float, t: float) -> dict[str, Any]:
    return {
        "code": "85354-9",
        "time": iso(t),
        "components": [
            {"code": "8480-6", "unit": "mm[Hg]", "value": sys},
            {"code": "8462-4", "unit": "mm[Hg]", "value": dia},
        ],
    }


class World:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def setup(self, config: Config) -> World:
        c = self.client
        self.adm, self.adm_t = await admin(c, config.data_dir)
        self.prov = await invite_and_enroll(c, self.adm, self.adm_t, "provider", npi=NPI)
        self.pat = await invite_and_enroll(c, self.adm, self.adm_t, "patient")
        self.other = await invite_and_enroll(c, self.adm, self.adm_t, "patient")
        self.dev = await self.device(self.pat)
        self.other_dev = await self.device(self.other)
        self.prov_t = await get_token(c, self.prov)
        self.pat_t = await get_token(c, self.pat)
        self.other_t = await get_token(c, self.other)
        self.dev_t = await get_token(c, self.dev)
        self.other_dev_t = await get_token(c, self.other_dev)
        return self

    async def device(self, patient: Holder, alg: str = "EdDSA") -> Holder:
        """A monitor the patient registers themself (their own action: no consent needed;
        an admin may not, and a provider needs the patient's ``devices`` consent)."""
        return await invite_and_enroll(
            self.client,
            patient,
            await get_token(self.client, patient),
            "device",
            holder=Holder(alg),
            enroll_extra=DEVICE,
            patient=patient.sub,
        )

    async def post(
        self, jws: str, device: Holder | None = None, token: str | None = None, **kw: Any
    ) -> Any:
        dev = device or self.dev
        tok = token or (self.dev_t if dev is self.dev else self.other_dev_t)
        headers = {"Content-Type": "application/jose", **kw.pop("headers", {})}
        return await call(
            self.client, "POST", "/v1/vitals", dev, tok, data=jws, headers=headers, **kw
        )

    async def send(self, payload: Any, device: Holder | None = None, **header: Any) -> Any:
        dev = device or self.dev
        return await self.post(sign(dev, payload, **header), dev)

    async def read(
        self, who: Holder, token: str, patient: Holder | None = None, **query: Any
    ) -> Any:
        pid = (patient or self.pat).sub
        return await call(
            self.client, "GET", f"/v1/patients/{pid}/vitals", who, token, params=query
        )

    async def grant(self, scopes: list[str], grantee: Holder | None = None) -> Any:
        until = iso(self.now() + 3600)
        resp = await call(
            self.client,
            "POST",
            "/v1/consents",
            self.pat,
            self.pat_t,
            json={"grantee": (grantee or self.prov).sub, "scopes": scopes, "until": until},
        )
        assert resp.status == 201, await resp.text()
        return await resp.json()

    def now(self) -> float:
        import time

        return time.time()

    async def events(self, kind: str) -> list[dict[str, Any]]:
        size = (await (await self.client.get("/readyz")).json())["ledger_size"]
        out = []
        for i in range(size):
            e = (await (await self.client.get(f"/ledger/entries/{i}")).json())["event"]
            if e["type"] == kind:
                out.append({**e, "_index": i})
        return out

    async def ticket(self, sid: str, h: Holder, token: str) -> str:
        r = await call(self.client, "POST", f"/v1/sessions/{sid}/ticket", h, token)
        assert r.status == 200, await r.text()
        return str((await r.json())["ticket"])

    async def ws(self, sid: str, h: Holder, token: str) -> Any:
        ws = await self.client.ws_connect(
            f"/v1/sessions/{sid}/ws?ticket={await self.ticket(sid, h, token)}"
        )
        assert (await ws.receive_json(timeout=5))["type"] == "hello"
        return ws

    async def admitted_call(self) -> tuple[str, Any, Any]:
        """A call the provider scheduled, both parties' sockets open, the patient admitted."""
        r = await call(
            self.client,
            "POST",
            "/v1/sessions",
            self.prov,
            self.prov_t,
            json={"patient": self.pat.sub},
        )
        assert r.status == 201, await r.text()
        sid = str((await r.json())["id"])
        prov_ws = await self.ws(sid, self.prov, self.prov_t)
        pat_ws = await self.ws(sid, self.pat, self.pat_t)
        assert (await prov_ws.receive_json(timeout=5))["type"] == "waiting"
        r = await call(self.client, "POST", f"/v1/sessions/{sid}/admit", self.prov, self.prov_t)
        assert r.status == 200
        assert (await prov_ws.receive_json(timeout=5))["type"] == "admitted"
        assert (await pat_ws.receive_json(timeout=5))["type"] == "admitted"
        return sid, prov_ws, pat_ws
