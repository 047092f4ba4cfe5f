"""Devices checked at enrollment: the custody this ledger records for a device's UDI decides
whether it may enroll. Never commissioned here, recalled, suspect, decommissioned or expired:
refused, with the verdict. Handed to identity as ``auth.http.DEVICE_PROVENANCE`` (identity
does not import the supply chain)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..errors import BadRequest, Conflict, GatewayError
from .gs1 import InvalidIdentifier, parse_udi
from .service import Supply, verdict

__all__ = ["GENUINE", "RESERVE_GRACE", "DeviceRefused", "UdiEnrolled", "check_device"]

#: Verdicts a device may enroll with: held by a party, or dispensed (to its patient).
GENUINE = frozenset({"active", "dispensed"})
#: Seconds a unit reserved by an enrollment that has not (yet) enrolled stays its: the
#: enrollment may still be under way. After that another device may take the unit.
RESERVE_GRACE = 60


class DeviceRefused(GatewayError):
    """422: the device's custody does not show it genuine. ``verdict`` says what it shows;
    ``item`` is the unit."""

    status = 422
    slug = "device-provenance"
    title = "This device's provenance does not allow its enrollment"


class UdiEnrolled(Conflict):
    """409: another device is enrolled with this UDI (or is enrolling with it now)."""

    slug = "udi-enrolled"
    title = "Another device is enrolled with this UDI"


async def check_device(
    supply: Supply,
    udi: Any,
    required: bool,
    jkt: str | None = None,
    enrolled: Callable[[str], bool] | None = None,
) -> str | None:
    """The device's unit (normal form) if ``udi`` names a genuine one, reserved for the
    device key ``jkt``; None when no UDI was given and none is ``required``. ``enrolled``
    says whether a key belongs to an enrolled device that is not revoked (blocking). Raises
    BadRequest (no or malformed UDI), DeviceRefused or UdiEnrolled."""
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
    if jkt is not None:
        now = int(supply.clock())

        def held(other: str, reserved: int) -> bool:
            return (enrolled is not None and enrolled(other)) or now - reserved < RESERVE_GRACE

        if not await asyncio.to_thread(supply.store.reserve_device, unit.uri, jkt, now, held):
            raise UdiEnrolled(
                "another device is enrolled with this UDI (or is enrolling with it): one "
                "device per unit",
                reason="udi_enrolled",
                item=unit.uri,
            )
    return unit.uri
