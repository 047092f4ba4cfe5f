"""A small supply chain for tests: an admin, parties enrolled with GLNs, EPCIS documents
built and signed as a party's software would."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from pathlib import Path
from typing import Any

import jwt
from aiohttp import ClientResponse

from gateway.auth.jwk import HolderKey
from gateway.supply.gs1 import check_digit
from tests.gateway.idclient import Client, Holder, admin, call, get_token, invite_and_enroll

CONTEXT = ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"]
JOSE = {"Content-Type": "application/jose"}


def gln(n: int) -> str:
    body = f"{n:012d}"
    return body + str(check_digit(body))


def sgtin(serial: str, gtin_body: str = "7061414112345") -> str:
    """A Digital Link of GTIN ``gtin_body`` + check digit and ``serial``."""
    return f"https://id.gs1.org/01/{gtin_body}{check_digit(gtin_body)}/21/{serial}"


def sscc(n: int) -> str:
    body = f"3061414{n:010d}"
    return f"https://id.gs1.org/00/{body}{check_digit(body)}"


def party_uri(g: str) -> str:
    return f"https://id.gs1.org/417/{g}"


def _event(kind: str, action: str, step: str | None, **fields: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "type": kind,
        "eventID": f"urn:uuid:{secrets.token_hex(4)}-0000-4000-8000-{secrets.token_hex(6)}",
        "eventTime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "eventTimeZoneOffset": "+00:00",
        "action": action,
    }
    if step is not None:
        ev["bizStep"] = step
    ev.update(fields)
    return ev


def commission(items: list[str], lot: str = "L1", expiry: str = "2099-12-31") -> dict[str, Any]:
    ilmd = {"cbvmda:lotNumber": lot, "cbvmda:itemExpirationDate": expiry}
    return _event("ObjectEvent", "ADD", "commissioning", epcList=items, ilmd=ilmd)


def ship(items: list[str], to: str) -> dict[str, Any]:
    dest = [{"type": "owning_party", "destination": party_uri(to)}]
    return _event(
        "ObjectEvent",
        "OBSERVE",
        "shipping",
        epcList=items,
        destinationList=dest,
        disposition="in_transit",
    )


def receive(items: list[str]) -> dict[str, Any]:
    return _event("ObjectEvent", "OBSERVE", "receiving", epcList=items)


def dispense(items: list[str]) -> dict[str, Any]:
    return _event("ObjectEvent", "OBSERVE", "dispensing", epcList=items, disposition="dispensed")


def decommission(items: list[str]) -> dict[str, Any]:
    return _event("ObjectEvent", "DELETE", "decommissioning", epcList=items)


def recall(items: list[str]) -> dict[str, Any]:
    return _event("ObjectEvent", "OBSERVE", None, epcList=items, disposition="recalled")


def recall_lots(lots: list[str]) -> dict[str, Any]:
    """A recall of every unit of each lot (EPC classes with a lot, in quantityList)."""
    return _event(
        "ObjectEvent",
        "OBSERVE",
        None,
        epcList=[],
        quantityList=[{"epcClass": lot} for lot in lots],
        disposition="recalled",
    )


def pack(parent: str, children: list[str]) -> dict[str, Any]:
    return _event("AggregationEvent", "ADD", "packing", parentID=parent, childEPCs=children)


def unpack(parent: str, children: list[str]) -> dict[str, Any]:
    return _event("AggregationEvent", "DELETE", "unpacking", parentID=parent, childEPCs=children)


def document(*events: dict[str, Any]) -> dict[str, Any]:
    return {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-12-03T10:00:00.000Z",
        "epcisBody": {"eventList": list(events)},
    }


def sign(holder: Holder, payload: Any, typ: str = "epcis+json", **header: Any) -> str:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    kid = HolderKey.from_jwk(holder.jwk).jkt
    return jwt.api_jws.PyJWS().encode(
        raw, holder.key, algorithm=holder.alg, headers={"typ": typ, "kid": kid, **header}
    )


class Party:
    def __init__(self, holder: Holder, token: str, gln: str, kind: str) -> None:
        self.holder, self.token, self.gln, self.kind = holder, token, gln, kind


class World:
    def __init__(self, client: Client, admin: Holder, admin_token: str) -> None:
        self.client = client
        self.admin = admin
        self.admin_token = admin_token

    @classmethod
    async def make(cls, client: Client, data_dir: Path) -> World:
        h, t = await admin(client, data_dir)
        return cls(client, h, t)

    async def party(self, kind: str, n: int) -> Party:
        g = gln(n)
        h = await invite_and_enroll(
            self.client,
            self.admin,
            self.admin_token,
            "party",
            gln=g,
            kind=kind,
            display_name=f"{kind.title()} {n}",
        )
        return Party(h, await get_token(self.client, h), g, kind)

    async def post(
        self, who: Party, *events: dict[str, Any], jws: str | None = None
    ) -> ClientResponse:
        body = jws if jws is not None else sign(who.holder, document(*events))
        return await call(
            self.client,
            "POST",
            "/v1/supply/events",
            who.holder,
            who.token,
            data=body,
            headers=JOSE,
        )

    async def ok(self, who: Party, *events: dict[str, Any]) -> dict[str, Any]:
        r = await self.post(who, *events)
        body: dict[str, Any] = await r.json()
        assert r.status == 201, body
        return body

    async def refused(self, who: Party, *events: dict[str, Any]) -> dict[str, Any]:
        r = await self.post(who, *events)
        body: dict[str, Any] = await r.json()
        assert r.status == 409, body
        assert r.content_type == "application/problem+json"
        return body

    async def item(self, who: Holder, token: str, uri: str) -> tuple[int, dict[str, Any]]:
        from urllib.parse import quote

        r = await call(self.client, "GET", f"/v1/supply/items/{quote(uri, safe='')}", who, token)
        return r.status, await r.json()
