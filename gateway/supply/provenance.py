"""Devices checked at enrollment: the custody this ledger records for a device's UDI decides
whether it may enroll. Never commissioned here, recalled, suspect, decommissioned or expired:
refused, with the verdict. Handed to identity as ``auth.http.DEVICE_PROVENANCE`` (identity
does not import the supply chain)."""

from __future__ import annotations

import asyncio
from typing import Any

from ..errors import BadRequest, GatewayError
from .gs1 import InvalidIdentifier, parse_udi
from .service import Supply, verdict

__all__ = ["GENUINE", "DeviceRefused", "check_device"]

#: Verdicts a device may enroll with: held by a party, or dispensed (to its patient).
GENUINE = frozenset({"active", "dispensed"})


class DeviceRefused(GatewayError):
    """422: the device's custody does not show it genuine. ``verdict`` says what it shows;
    ``item`` is the unit."""

    status = 422
    slug = "device-provenance"
    title = "This device's provenance does not allow its enrollment"


async def check_device(supply: Supply, udi: Any, required: bool) -> str | None:
    """The device's unit (normal form) if ``udi`` names a genuine one; None when no UDI
    was given and none is ``required``. Raises BadRequest (no or malformed UDI) or
    DeviceRefused."""
    if udi is None and not required:
        return None
    if udi is None:
        raise BadRequest("this gateway enrolls a device with its udi (GS1 UDI or Digital Link)")
    try:
        unit = parse_udi(udi)
    except InvalidIdentifier as e:
        raise BadRequest(f"udi: {e}") from e
    state = await asyncio.to_thread(supply.store.item, unit.uri)
    found = verdict(state, supply.today())
    if found not in GENUINE:
        raise DeviceRefused(
            f"the supply chain on this ledger says this device is {found}",
            verdict=found,
            item=unit.uri,
            suspect=[] if state is None else state.suspect,
        )
    return unit.uri
