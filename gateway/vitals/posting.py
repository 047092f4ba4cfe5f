"""Posting a device's signed batch, whatever carried it: ``POST /v1/vitals`` and the MQTT
ingestion (gateway/mqtt) both call :func:`post_batch`, so validation, idempotency,
encryption, the ledger commitment and the live push are one code path. The transport
authenticates the device (an access token, a broker topic) and renders the answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest
from .intake import Lookup, Vitals

__all__ = ["Posted", "compact_jws", "post_batch"]


@dataclass(frozen=True, slots=True)
class Posted:
    """The answer to a batch: its JSON body and whether it was new (False: a repeat,
    answered with the first receipt)."""

    body: dict[str, Any]
    fresh: bool

    @property
    def status(self) -> int:
        return 201 if self.fresh else 200


def compact_jws(raw: bytes) -> str:
    """The compact JWS a device sent, as text. Raises BadRequest if it is not ASCII."""
    try:
        return raw.decode("ascii").strip()
    except UnicodeDecodeError as e:
        raise BadRequest("a compact JWS is ASCII") from e


async def post_batch(vitals: Vitals, lookup: Lookup, device: str, jws: str) -> Posted:
    """Verify, validate, seal, store and commit ``device``'s batch (``jws``), push a new
    one to live viewers, and return the answer. ``lookup`` finds an enrollment. Raises what
    :meth:`Intake.ingest` raises (GatewayError subclasses, ledger errors), and what a
    device check of ``vitals.checks`` raises (a device recalled since its enrollment)."""
    for check in vitals.checks:
        await check(device, lookup)
    receipt, batch, fresh = await vitals.intake.ingest(lookup, device, jws)
    readings = list(batch.batch.readings)
    if fresh:
        await vitals.streamer.push(batch.patient, batch.device, batch.batch.batch_id, readings)
    body = {"batch_id": batch.batch.batch_id, "count": len(readings), "receipt": receipt.to_json()}
    return Posted(body, fresh)
