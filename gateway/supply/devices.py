"""Devices recalled after their enrollment: every vitals batch (HTTP or MQTT, both through
``gateway.vitals.posting.post_batch``) first asks :meth:`DeviceGuard.check` whether the
device's unit is still genuine. Not genuine (recalled, suspect, decommissioned, expired):
the batch is refused with a 403 problem that says the verdict (audited as every 403 is, an
``auth.refused`` entry naming the problem type; nothing of the batch is stored), and the
providers watching the patient's live vitals in a call here are told.

Cheap per batch: the verdict of each device is cached. An entry is forgotten at once when
this process changes the state of its unit (a recall, a decommissioning, a clone making it
suspect: :attr:`Supply.listeners`), and in any case after ``VERDICT_TTL`` seconds, which
bounds how long another replica's recall (or the day a unit expires) goes unseen here.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..auth.tokens import Forbidden
from ..vitals.intake import Lookup
from ..vitals.stream import Streamer
from .provenance import GENUINE
from .service import Supply, verdict

__all__ = ["ALERT_EVERY", "MAX_CACHED", "VERDICT_TTL", "DeviceGuard", "DeviceNotGenuine"]

log = logging.getLogger("telegate.supply.devices")

#: Seconds a cached verdict is trusted (a recall on another replica is seen within this).
VERDICT_TTL = 30.0
#: Seconds between two notices to a patient's providers about the same refused device.
ALERT_EVERY = 60.0
#: Devices whose verdict is cached (the least recently read are forgotten first).
MAX_CACHED = 100_000


class DeviceNotGenuine(Forbidden):
    """403: the device's unit is no longer genuine on this ledger; ``verdict`` says why."""

    slug = "device-not-genuine"
    title = "The supply chain no longer shows this device genuine"


@dataclass(frozen=True, slots=True)
class _Seen:
    unit: str | None  # None: enrolled without a UDI (or not a device): nothing to check
    patient: str | None
    verdict: str | None
    at: float


class DeviceGuard:
    def __init__(
        self, supply: Supply, streamer: Streamer | None, clock: Callable[[], float]
    ) -> None:
        self.supply = supply
        self.streamer = streamer
        self.clock = clock
        self._cache: OrderedDict[str, _Seen] = OrderedDict()
        self._by_unit: dict[str, set[str]] = {}
        self._epoch = 0
        self._told: dict[str, float] = {}
        supply.listeners.append(self.forget)

    def forget(self, units: set[str]) -> None:
        """The state of ``units`` changed: read their devices' verdicts again."""
        self._epoch += 1  # a read under way began before this: not cached
        for u in units:
            for device in self._by_unit.pop(u, ()):
                self._cache.pop(device, None)

    def _read(self, device: str, lookup: Lookup, now: float) -> _Seen:
        subject = lookup(device)
        udi = None if subject is None else subject.attrs.get("udi")
        if subject is None or subject.role != "device" or not isinstance(udi, str):
            return _Seen(None, None, None, now)
        state = self.supply.store.item(udi)
        return _Seen(udi, subject.patient, verdict(state, self.supply.today()), now)

    def _keep(self, device: str, seen: _Seen) -> None:
        old = self._cache.pop(device, None)
        if old is not None and old.unit is not None:
            self._by_unit.get(old.unit, set()).discard(device)
        self._cache[device] = seen
        if seen.unit is not None:
            self._by_unit.setdefault(seen.unit, set()).add(device)
        while len(self._cache) > MAX_CACHED:
            gone, was = self._cache.popitem(last=False)
            if was.unit is not None:
                self._by_unit.get(was.unit, set()).discard(gone)

    async def check(self, device: str, lookup: Lookup) -> None:
        """Raise DeviceNotGenuine if ``device``'s unit is not genuine now (and tell its
        patient's providers). A device enrolled without a UDI, or an unknown subject, passes
        here: the intake refuses what is not an enrolled device."""
        now = self.clock()
        seen = self._cache.get(device)
        if seen is None or not 0 <= now - seen.at < VERDICT_TTL:
            epoch = self._epoch
            seen = await asyncio.to_thread(self._read, device, lookup, now)
            if epoch == self._epoch:
                self._keep(device, seen)
        else:
            self._cache.move_to_end(device)
        if seen.verdict is None or seen.verdict in GENUINE:
            return
        await self._tell(device, seen, now)
        raise DeviceNotGenuine(
            f"the supply chain on this ledger says this device is {seen.verdict}: "
            "its readings are refused",
            verdict=seen.verdict,
        )

    async def _tell(self, device: str, seen: _Seen, now: float) -> None:
        if self.streamer is None or seen.patient is None:
            return
        last = self._told.get(device)
        if last is not None and 0 <= now - last < ALERT_EVERY:
            return
        if len(self._told) >= MAX_CACHED:
            self._told.clear()
        self._told[device] = now
        message: dict[str, Any] = {
            "type": "device_refused",
            "patient": seen.patient,
            "device": device,
            "verdict": seen.verdict,
        }
        try:
            await self.streamer.tell(seen.patient, message)
        except Exception:  # the refusal stands; a notice that fails is logged
            log.exception("could not tell the providers of a refused device")
