"""Checking a unit's custody offline: what ``GET /v1/supply/items/{unit}`` answered, against
the log's verifier key alone. Pure: no I/O.

Every event must carry its ledger leaf and a receipt that verifies (checkpoint signature,
inclusion, leaf hash); each leaf must be the ``supply.event`` the row says it is, by the
party and GLN it names, about this unit; the events must be in ledger order. The custodian
and destination the answer claims are then replayed from the leaves themselves, so a
gateway cannot claim a custody its own log does not show.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from ledger.checkpoint import Checkpoint
from ledger.errors import InvalidProof, LedgerError
from ledger.log import Receipt
from ledger.note import Verifier

from ..errors import GatewayError
from .units import verify_unit

__all__ = ["InvalidCustody", "Verified", "verify_custody"]


class InvalidCustody(GatewayError):
    """The answer does not prove the custody it shows."""

    status = 502
    slug = "invalid-custody"
    title = "The custody answer does not verify"


@dataclass(frozen=True, slots=True)
class Verified:
    item: str
    status: str
    events: int
    checkpoint_size: int  # the largest checkpoint the receipts were proved against
    custodian: str | None
    checkpoint: Checkpoint | None = None  # that checkpoint (None: an unknown unit)


def _leaf(row: dict[str, Any], log: Verifier, item: str) -> tuple[int, Checkpoint, dict[str, Any]]:
    """The row's leaf, once its receipt verifies and it says what the row says."""
    try:
        entry = base64.b64decode(row["entry"], validate=True)
        receipt = Receipt.from_json(row["receipt"])
        cp = receipt.verify(log, entry)
        leaf = json.loads(entry)
        data = leaf["data"]
    except (KeyError, TypeError, ValueError, binascii.Error, LedgerError) as e:
        raise InvalidCustody(f"event {row.get('event_id')!r}: {e}") from e
    said = (row.get("party"), row.get("gln"), row.get("biz_step"), row.get("ledger_index"))
    if leaf.get("type") != "supply.event":
        raise InvalidCustody(f"leaf {receipt.index} is not a supply event")
    if item not in data.get("items", []) and item != data.get("parent"):
        # Not named: one of the units the entry's Merkle root stands for.
        try:
            verify_unit(item, row.get("moved_proof"), data.get("moved"))
        except (InvalidProof, AttributeError) as e:
            raise InvalidCustody(f"leaf {receipt.index} is not about {item}: {e}") from e
    if said != (leaf.get("actor"), data.get("gln"), data.get("biz_step"), receipt.index):
        raise InvalidCustody(f"leaf {receipt.index} does not say what its row says")
    return receipt.index, cp, data


def verify_custody(answer: Any, log: Verifier) -> Verified:
    """Check ``answer`` (the JSON of ``GET /v1/supply/items/{unit}``) with the log's key.
    Raises InvalidCustody naming the first thing that does not verify."""
    if not isinstance(answer, dict) or not isinstance(answer.get("item"), str):
        raise InvalidCustody("not a custody answer")
    item, status = answer["item"], str(answer.get("status"))
    if status == "unknown":
        return Verified(item, status, 0, 0, None)
    rows = answer.get("events")
    if not isinstance(rows, list) or not rows:
        raise InvalidCustody("a known unit's answer lists its events")
    last, largest = -1, None
    custodian: str | None = None
    in_transit_to: str | None = None
    for row in rows:
        if not isinstance(row, dict) or "receipt" not in row:
            raise InvalidCustody(f"event {row!r:.60} has no receipt (not on the ledger yet)")
        index, cp, data = _leaf(row, log, item)
        if index <= last:
            raise InvalidCustody("the events are not in ledger order")
        last = index
        if largest is None or cp.size > largest.size:
            largest = cp
        # The custody the leaves show, replayed: who holds the unit, where it is going.
        step = data.get("biz_step")
        if step in ("commissioning", "packing") and custodian is None:
            custodian = data.get("gln")
        elif step == "shipping":
            in_transit_to = data.get("destination")
        elif step == "receiving":
            custodian, in_transit_to = data.get("gln"), None
    if answer.get("truncated") is False and (
        answer.get("custodian") != custodian or answer.get("in_transit_to") != in_transit_to
    ):
        raise InvalidCustody(
            f"the answer says custodian {answer.get('custodian')}, in transit to "
            f"{answer.get('in_transit_to')}; its events show {custodian}, {in_transit_to}"
        )
    assert largest is not None  # rows is not empty
    return Verified(item, status, len(rows), largest.size, custodian, largest)
