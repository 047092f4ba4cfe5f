"""OpenAPI paths of the supply-chain endpoints (``gateway.supply.http``)."""

from __future__ import annotations

from typing import Any

from ..openapi_parts import (
    AUTH_ERRORS,
    B64,
    BODY_ERRORS,
    DB_UNAVAILABLE,
    DPOP,
    OLD_PROOF,
    STRING,
    json_reply,
    obj,
    path_param,
    problem,
    ref,
)

__all__ = ["PATHS", "SCHEMAS"]

_MAYBE = {"type": ["string", "null"]}
_UNITS = {"type": "array", "items": STRING}

#: The named shapes of the supply answers (``components/schemas``). The custody of a unit is
#: open (``additionalProperties`` not false): supply follow-ups add members to it.
SCHEMAS: dict[str, Any] = {
    "SupplyAccepted": obj(
        {
            "events": {
                "type": "array",
                "items": obj(
                    {
                        "event_id": STRING,
                        "receipt": ref("Receipt"),
                        "holders": {
                            **_UNITS,
                            "description": "(a recall) who holds the recalled units",
                        },
                    },
                    ["event_id", "receipt"],
                ),
            }
        },
        description="Each accepted event's id and the ledger receipt of its entry",
    ),
    "UnitProof": obj(
        {
            "index": {"type": "integer", "minimum": 0},
            "size": {"type": "integer", "minimum": 1},
            "inclusion_proof": ref("InclusionProof"),
            "proof": OLD_PROOF,
        },
        description="Inclusion of a unit among the units a ledger entry's summary stands for",
    ),
    "CustodyEvent": {
        "type": "object",
        "required": ["event_id", "party", "gln", "biz_step", "event_time", "ledger_index"],
        "properties": {
            "event_id": STRING,
            "party": STRING,
            "gln": STRING,
            "biz_step": STRING,
            "event_time": STRING,
            "ledger_index": {"type": ["integer", "null"]},
            "receipt": ref("Receipt"),
            "entry": {**B64, "description": "the ledger leaf the receipt proves"},
            "moved_proof": ref("UnitProof"),
        },
    },
    "Custody": {
        "type": "object",
        "description": "A unit's status and, once commissioned here, its custody and history",
        "required": ["item", "status"],
        "properties": {
            "item": {**STRING, "description": "the unit, in normal form"},
            "status": {
                **STRING,
                "description": "unknown, recalled, suspect, decommissioned, expired, "
                "dispensed or active",
            },
            "kind": {"enum": ["sgtin", "sscc"]},
            "key": {**STRING, "description": "GTIN-14 or SSCC-18"},
            "custodian": {**STRING, "description": "GLN"},
            "commissioned_by": {**STRING, "description": "GLN"},
            "in_transit_to": _MAYBE,
            "parent": _MAYBE,
            "contents": _UNITS,
            "lot": _MAYBE,
            "expiry": _MAYBE,
            "suspect": _UNITS,
            "events": {"type": "array", "items": ref("CustodyEvent")},
            "truncated": {"type": "boolean"},
        },
    },
}

PATHS: dict[str, Any] = {
    "/v1/supply/events": {
        "post": {
            "summary": "A supply-chain party posts a signed EPCIS 2.0 document (compact JWS, typ "
            "epcis+json, made with its enrolled key): each event is checked against GS1's "
            "EPCIS 2.0 JSON Schema and the custody rules, then recorded as one ledger entry",
            "description": "Supported: ObjectEvent commissioning (ADD), shipping, receiving, "
            "dispensing (OBSERVE), decommissioning (DELETE), a recall (OBSERVE with disposition "
            "recalled, of units in epcList and of whole lots in quantityList; its answer row "
            "lists the `holders` of the recalled units); AggregationEvent packing (ADD) and "
            "unpacking (DELETE). Items are EPC "
            "URNs (sgtin, sscc) or GS1 Digital Link URIs. Idempotent by eventID: the same "
            "document again answers 200 with the first receipts. See docs/supply.md.",
            "security": DPOP,
            "requestBody": {
                "required": True,
                "content": {"application/jose": {"schema": {"type": "string"}}},
            },
            "responses": {
                "201": json_reply(
                    "accepted: each event's id and ledger receipt", ref("SupplyAccepted")
                ),
                "200": json_reply(
                    "a repeat of an accepted document: its first receipts", ref("SupplyAccepted")
                ),
                "409": problem(
                    "a custody rule refused an event (problem member `reason`: commissioned_twice, "
                    "not_custodian, not_shipped_to_you, in_transit, packed, unknown_item, "
                    "dispensed_twice, recalled, decommissioned, expired, not_manufacturer, "
                    "unknown_lot, ...; "
                    "`item`: the unit), recorded on the ledger as supply.refused; or an eventID "
                    "already accepted with another event (event-id-reused)"
                ),
                "422": problem(
                    "not an EPCIS 2.0 document (errors lists the schema's complaints), or an "
                    "event type, business step or identifier this gateway does not support"
                ),
                **AUTH_ERRORS,
                **BODY_ERRORS,
                "400": problem(
                    "not a compact JWS, the signature does not verify with the party's key "
                    "(invalid-signature), or the payload is not JSON"
                ),
                **DB_UNAVAILABLE,
            },
        }
    },
    "/v1/supply/items/{path}": {
        "get": {
            "summary": "A unit's custody (a party, provider, admin or auditor): its status and "
            "every event that concerns it, each with its ledger entry and inclusion proof",
            "description": "The unit: a GS1 Digital Link URI or EPC URN, percent-encoded, or "
            "the Digital Link path `01/{gtin}/21/{serial}` (`00/{sscc}` for a logistic unit). "
            "status: unknown (never commissioned here), recalled, suspect (see `suspect`), "
            "decommissioned, expired, dispensed or active.",
            "security": DPOP,
            "parameters": [path_param("path")],
            "responses": {
                "200": json_reply(
                    "the unit's status and custody",
                    ref("Custody"),
                ),
                "404": problem("not a unit identifier this gateway reads"),
                **AUTH_ERRORS,
                "400": problem("identifier too long, or a malformed Host header"),
                **DB_UNAVAILABLE,
            },
        }
    },
}
