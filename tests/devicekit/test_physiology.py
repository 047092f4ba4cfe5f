"""The simulated series: valid for the gateway's vitals validation, within plausible
ranges, and with the shapes they claim (circadian heart rate, rare SpO2 dips, the blood
pressure medication effect, the heart-failure weight trend), the same for the same seed."""

from __future__ import annotations

import random
import statistics
from typing import Any

import pytest

from gateway.devicekit.physiology import PROFILES, Patient
from gateway.vitals.batch import Limits, check_readings

START = 1_796_256_000.0  # 2026-12-01T00:00:00Z: day 0, midnight UTC
STEP = 300.0  # a batch every five minutes
DAYS = 3


def series(profile: str, seed: int = 7, medicated: bool = True) -> list[tuple[float, Any]]:
    p = Patient(PROFILES[profile], random.Random(seed), START, medicated)
    return [
        (START + i * STEP, p.readings(START + i * STEP)) for i in range(int(DAYS * 86400 / STEP))
    ]


def values(s: list[tuple[float, Any]], code: str) -> list[tuple[float, Any]]:
    out = []
    for t, batch in s:
        for r in batch:
            if r["code"] == code:
                out.append((t, r["value"] if "value" in r else r["components"]))
    return out


def hour(t: float) -> float:
    return (t % 86400) / 3600


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_batch_passes_the_gateway_validation(profile: str) -> None:
    for t, batch in series(profile):
        normalised = check_readings(batch, t + 1, Limits())
        assert len(normalised) == len(batch)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_values_stay_in_plausible_ranges(profile: str) -> None:
    s = series(profile)
    assert all(40 <= v <= 160 for _, v in values(s, "8867-4"))
    assert all(70 <= v <= 100 for _, v in values(s, "59408-5"))
    for _, (sys_, dia) in values(s, "85354-9"):
        assert 85 <= sys_["value"] <= 220 and 45 <= dia["value"] <= sys_["value"] - 20
    assert all(8 <= v <= 40 for _, v in values(s, "9279-1"))


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_heart_rate_is_higher_by_day_than_at_night(profile: str) -> None:
    hr = values(series(profile), "8867-4")
    day = statistics.mean(v for t, v in hr if 12 <= hour(t) < 18)
    night = statistics.mean(v for t, v in hr if 0 <= hour(t) < 6)
    assert day - night > 8, (day, night)


def test_spo2_dips_are_present_but_rare_and_deeper_in_copd() -> None:
    def dips(profile: str) -> float:
        base = PROFILES[profile].spo2_base
        spo2 = [v for _, v in values(series(profile), "59408-5")]
        return sum(v < base - 2.5 for v in spo2) / len(spo2)

    rates = {p: dips(p) for p in PROFILES}
    assert all(0 < r < 0.25 for r in rates.values()), rates
    assert rates["copd"] > rates["hypertension"], rates
    copd = [v for _, v in values(series("copd"), "59408-5")]
    assert min(copd) < 86 and statistics.median(copd) > 90


def test_the_blood_pressure_medication_lowers_the_mean() -> None:
    def mean_systolic(medicated: bool) -> float:
        bp = values(series("hypertension", medicated=medicated), "85354-9")
        return statistics.mean(c[0]["value"] for _, c in bp)

    on, off = mean_systolic(True), mean_systolic(False)
    assert off - on > 5, (on, off)
    # Lowest a few hours after the 08:00 dose, highest before it.
    bp = values(series("hypertension"), "85354-9")
    after = statistics.mean(c[0]["value"] for t, c in bp if 11 <= hour(t) < 14)
    before = statistics.mean(c[0]["value"] for t, c in bp if 5 <= hour(t) < 8)
    assert before - after > 10, (before, after)


def test_heart_failure_weight_trends_up_and_others_report_none() -> None:
    w = values(series("heart-failure"), "29463-7")
    first = statistics.mean(v for t, v in w if t < START + 86400)
    last = statistics.mean(v for t, v in w if t >= START + 2 * 86400)
    assert 0.2 < last - first < 0.7, (first, last)
    assert values(series("hypertension"), "29463-7") == []


def test_the_same_seed_gives_the_same_series_and_another_seed_another() -> None:
    assert series("copd", seed=3) == series("copd", seed=3)
    assert series("copd", seed=3) != series("copd", seed=4)
