"""Plausible vital-sign series for simulated patients (``telegate device simulate``).

Pure and deterministic: a :class:`Patient` is a profile and a seeded random generator;
``readings(t)`` gives what its monitor reports at epoch second ``t`` (UTC, the patient's
local time taken as UTC). Not a clinical model: shapes a reviewer recognises, within the
gateway's plausibility ranges (gateway/vitals/codes.py).

- Heart rate: circadian, highest mid-afternoon, lowest before dawn (about +-8 /min around
  the profile's mean), with beat-to-beat noise.
- Blood pressure: the profile's mean with noise and a morning surge; a daily dose taken at
  08:00 lowers it over the next hours (peak effect about 4 h after, fading by the next
  dose) when the patient is ``medicated``.
- SpO2 by pulse oximetry: near the profile's baseline, with rare dips (a few points for a
  few minutes), more frequent and deeper in COPD.
- Body weight (heart failure): a slow upward trend (fluid retention, about 0.2 kg a day),
  with day-to-day noise; stable for the other profiles.
- Respiratory rate (COPD): raised, following the SpO2 dips.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass
from typing import Any

__all__ = ["PROFILES", "Patient", "Profile", "iso"]

DOSE_HOUR = 8.0  # the daily antihypertensive dose, local time


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    hr_mean: float
    sys_mean: float
    dia_mean: float
    spo2_base: float
    #: Chance per reading that an SpO2 dip starts, its depth range (points), its length
    #: in readings.
    dip_chance: float
    dip_depth: tuple[float, float]
    dip_length: int
    #: Systolic drop at the medication's peak (diastolic: half).
    med_effect: float
    weight: float
    weight_trend: float  # kg per day
    respiratory: bool  # reports respiratory rate


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("hypertension", 74, 152, 94, 97.2, 0.01, (3, 6), 3, 18, 88.0, 0.0, False),
        Profile("copd", 86, 134, 82, 92.0, 0.04, (4, 9), 5, 8, 71.0, 0.0, True),
        Profile("heart-failure", 80, 122, 74, 95.5, 0.02, (3, 7), 4, 10, 82.0, 0.2, False),
    )
}


def iso(t: float) -> str:
    """RFC 3339 UTC with milliseconds, as devices send it."""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _hour(t: float) -> float:
    return (t % 86_400) / 3600


class Patient:
    """One simulated patient. ``start`` anchors the weight trend (its day 0)."""

    def __init__(
        self, profile: Profile, rng: random.Random, start: float, medicated: bool = True
    ) -> None:
        self.profile = profile
        self.rng = rng
        self.start = start
        self.medicated = medicated
        self._dip_left = 0
        self._dip_depth = 0.0
        self._tick = 0

    # -- the shapes, noise-free (the tests check them) ------------------------------------
    def circadian(self, t: float) -> float:
        """Heart-rate offset by time of day: +8 at 15:00, -8 at 03:00."""
        return 8.0 * math.cos(2 * math.pi * (_hour(t) - 15.0) / 24)

    def medication(self, t: float) -> float:
        """Fraction (0..1) of the dose's peak effect at ``t``: rising over 4 h after the
        08:00 dose, then fading; 0 when not medicated."""
        if not self.medicated:
            return 0.0
        since = (_hour(t) - DOSE_HOUR) % 24
        return (since / 4.0) if since < 4 else math.exp(-(since - 4.0) / 10.0)

    def weight_at(self, t: float) -> float:
        return self.profile.weight + self.profile.weight_trend * (t - self.start) / 86_400

    # -- the readings ---------------------------------------------------------------------
    def heart_rate(self, t: float) -> int:
        v = self.profile.hr_mean + self.circadian(t) + self.rng.gauss(0, 2.5)
        v += 6.0 if self._dip_left else 0.0  # a desaturation speeds the heart
        return round(min(160.0, max(40.0, v)))

    def spo2(self) -> float:
        p = self.profile
        if self._dip_left == 0 and self.rng.random() < p.dip_chance:
            self._dip_left = p.dip_length
            self._dip_depth = self.rng.uniform(*p.dip_depth)
        dip = 0.0
        if self._dip_left:
            self._dip_left -= 1
            dip = self._dip_depth
        v = p.spo2_base - dip + self.rng.gauss(0, 0.5)
        return round(min(100.0, max(70.0, v)), 1)

    def blood_pressure(self, t: float) -> tuple[int, int]:
        p = self.profile
        surge = 6.0 * math.exp(-(((_hour(t) - 7.0) / 1.5) ** 2))  # the morning surge
        drop = p.med_effect * self.medication(t)
        sys_ = p.sys_mean + surge - drop + self.rng.gauss(0, 6)
        dia = p.dia_mean + surge / 2 - drop / 2 + self.rng.gauss(0, 4)
        sys_ = min(220.0, max(85.0, sys_))
        dia = min(sys_ - 25, max(45.0, dia))
        return round(sys_), round(dia)

    def weight(self, t: float) -> float:
        return round(self.weight_at(t) + self.rng.gauss(0, 0.3), 1)

    def readings(self, t: float) -> list[dict[str, Any]]:
        """One batch measured at ``t``: heart rate and SpO2 every time; blood pressure
        every 4th; respiratory rate (COPD) every 2nd; weight (heart failure) every 10th."""
        self._tick += 1
        when = iso(t)
        out: list[dict[str, Any]] = [
            {"code": "59408-5", "unit": "%", "value": self.spo2(), "time": when},
            {"code": "8867-4", "unit": "/min", "value": self.heart_rate(t), "time": when},
        ]
        if self._tick % 4 == 1:
            s, d = self.blood_pressure(t)
            out.append(
                {
                    "code": "85354-9",
                    "time": when,
                    "components": [
                        {"code": "8480-6", "unit": "mm[Hg]", "value": s},
                        {"code": "8462-4", "unit": "mm[Hg]", "value": d},
                    ],
                }
            )
        if self.profile.respiratory and self._tick % 2 == 1:
            rr = 20 + (4 if self._dip_left else 0) + self.rng.gauss(0, 1.5)
            out.append({"code": "9279-1", "unit": "/min", "value": round(rr), "time": when})
        if self.profile.weight_trend and self._tick % 10 == 1:
            out.append({"code": "29463-7", "unit": "kg", "value": self.weight(t), "time": when})
        return out
