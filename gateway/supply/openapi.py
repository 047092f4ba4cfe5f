"""OpenAPI paths of the supply-chain endpoints (``gateway.supply.http``)."""

from __future__ import annotations

from typing import Any

from ..openapi_parts import (
    AUTH_ERRORS,
    BODY_ERRORS,
    DB_UNAVAILABLE,
    DPOP,
    json_reply,
    path_param,
    problem,
)

__all__ = ["PATHS"]

_RECEIPT = {"type": "object", "required": ["index", "leaf_hash", "checkpoint", "inclusion_proof"]}

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
                    "accepted: each event's id and ledger receipt",
                    {
                        "type": "object",
                        "required": ["events"],
                        "properties": {
                            "events": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["event_id", "receipt"],
                                    "properties": {
                                        "event_id": {"type": "string"},
                                        "receipt": _RECEIPT,
                                    },
                                },
                            }
                        },
                    },
                ),
                "200": json_reply(
                    "a repeat of an accepted document: its first receipts", {"type": "object"}
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
                    {"type": "object", "required": ["item", "status"]},
                ),
                "404": problem("not a unit identifier this gateway reads"),
                **AUTH_ERRORS,
                "400": problem("identifier too long, or a malformed Host header"),
                **DB_UNAVAILABLE,
            },
        }
    },
}
