"""The ``make demo`` supply chain: a manufacturer and a distributor enrolled as parties,
the demo monitor's unit commissioned by the one, shipped to and received by the other,
through the real API (signed EPCIS documents), so the demo device enrolls with a UDI whose
custody on the ledger shows it genuine (docs/supply.md)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import jwt

from ..auth.jwk import HolderKey
from ..client import Credentials, Session, enroll
from .document import TYP
from .gs1 import check_digit

__all__ = ["DEMO_UDI", "seed_chain"]

#: The demo monitor's unit: GS1's example company prefix 0614141, a GTIN and a serial.
GTIN = "7061414112345" + str(check_digit("7061414112345"))
SERIAL = "DEMO-0001"
DEMO_UDI = f"(01){GTIN}(21){SERIAL}"
UNIT = f"https://id.gs1.org/01/{GTIN}/21/{SERIAL}"
CONTEXT = ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"]


def _gln(body: str) -> str:
    return body + str(check_digit(body))


MANUFACTURER = _gln("061414100000")
DISTRIBUTOR = _gln("401234500000")


def _event(action: str, step: str, **fields: Any) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return {
        "type": "ObjectEvent",
        "eventID": f"urn:uuid:{uuid.uuid4()}",
        "eventTime": now,
        "eventTimeZoneOffset": "+00:00",
        "action": action,
        "bizStep": step,
        "epcList": [UNIT],
        **fields,
    }


def _post(creds: Credentials, *events: dict[str, Any]) -> None:
    doc = {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "epcisBody": {"eventList": list(events)},
    }
    kid = HolderKey.from_jwk(creds.jwk).jkt
    jws = jwt.api_jws.PyJWS().encode(
        json.dumps(doc).encode(), creds.key, algorithm="EdDSA", headers={"typ": TYP, "kid": kid}
    )
    Session(creds).request("POST", "/v1/supply/events", jws.encode(), "application/jose")


def seed_chain(admin: Session, server: str) -> tuple[str, dict[str, Credentials]]:
    """Enroll the two parties (``admin`` invites them) and record the monitor's custody;
    returns its UDI and the parties' credentials."""

    def party(kind: str, gln: str, name: str) -> Credentials:
        invite = admin.post_json(
            "/v1/invites", {"role": "party", "gln": gln, "kind": kind, "display_name": name}
        )
        return enroll(server, str(invite["invite"]))

    maker = party("manufacturer", MANUFACTURER, "Demo Devices Inc")
    dist = party("distributor", DISTRIBUTOR, "Demo Medical Supply")
    expiry = (dt.date.today() + dt.timedelta(days=5 * 365)).isoformat()
    ilmd = {"cbvmda:lotNumber": "DEMO-LOT-1", "cbvmda:itemExpirationDate": expiry}
    to = [{"type": "owning_party", "destination": f"https://id.gs1.org/417/{DISTRIBUTOR}"}]
    _post(
        maker,
        _event("ADD", "commissioning", ilmd=ilmd),
        _event("OBSERVE", "shipping", destinationList=to, disposition="in_transit"),
    )
    _post(dist, _event("OBSERVE", "receiving"))
    return DEMO_UDI, {"manufacturer": maker, "distributor": dist}
