"""The validation table, reading by reading: every code in range and out, every unit
conversion, times, and the all-or-nothing rule with positions."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gateway.vitals.batch import InvalidBatch, Limits, check_readings
from gateway.vitals.codes import CODES
from tests.gateway.vitals.world import bp, iso

NOW = float(int(time.time()))
LIMITS = Limits(max_readings=100, max_age=3600, future_skew=60)


def one(code: str, unit: str, value: Any, t: float = NOW - 10) -> dict[str, Any]:
    return {"code": code, "unit": unit, "value": value, "time": iso(t)}


def check(*readings: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    return check_readings(list(readings), NOW, LIMITS)


def refused(*readings: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(InvalidBatch) as e:
        check(*readings)
    errors: list[dict[str, Any]] = e.value.extra["errors"]
    return errors


VALID = [
    ("8867-4", "/min", 72, 72),
    ("59408-5", "%", 97.5, 97.5),
    ("2708-6", "%", 95, 95),
    ("8480-6", "mm[Hg]", 120, 120),
    ("8462-4", "mm[Hg]", 80, 80),
    ("8310-5", "Cel", 36.8, 36.8),
    ("8310-5", "[degF]", 98.6, 37.0),
    ("9279-1", "/min", 16, 16),
    ("29463-7", "kg", 70.2, 70.2),
    ("29463-7", "[lb_av]", 154.32, 70.0),
    ("15074-8", "mmol/L", 5.4, 5.4),
    ("15074-8", "mg/dL", 99, 5.5),
]


@pytest.mark.parametrize(
    ("code", "unit", "sent", "stored"), VALID, ids=[f"{c}-{u}" for c, u, *_ in VALID]
)
def test_each_code_accepts_its_units_and_stores_the_canonical_value(
    code: str, unit: str, sent: float, stored: float
) -> None:
    (r,) = check(one(code, unit, sent))
    assert r["code"] == code and r["unit"] == CODES[code].unit
    assert r["value"] == pytest.approx(stored, abs=0.01)
    if unit != CODES[code].unit:
        assert r["sent"] == {"unit": unit, "value": sent}
    else:
        assert "sent" not in r


OUT_OF_RANGE = [
    ("8867-4", "/min", 0),
    ("8867-4", "/min", 400),
    ("59408-5", "%", 101),
    ("2708-6", "%", 20),
    ("8480-6", "mm[Hg]", 400),
    ("8462-4", "mm[Hg]", 5),
    ("8310-5", "Cel", 98.6),  # Fahrenheit sent as Celsius: caught by the range
    ("8310-5", "[degF]", 37),  # and the reverse
    ("9279-1", "/min", 120),
    ("29463-7", "kg", 900),
    ("29463-7", "[lb_av]", 0.1),
    ("15074-8", "mmol/L", 99),  # mg/dL sent as mmol/L
    ("15074-8", "mg/dL", 2),
]


@pytest.mark.parametrize(
    ("code", "unit", "value"), OUT_OF_RANGE, ids=[f"{c}-{v}" for c, _, v in OUT_OF_RANGE]
)
def test_implausible_values_are_refused(code: str, unit: str, value: float) -> None:
    (err,) = refused(one(code, unit, value))
    assert err["index"] == 0 and "plausible" in err["detail"]


@pytest.mark.parametrize(
    ("code", "unit"),
    [
        ("8867-4", "bpm"),
        ("59408-5", "1"),
        ("8310-5", "degC"),
        ("29463-7", "g"),
        ("15074-8", "mg/dl"),
    ],
)
def test_units_outside_the_table_are_refused(code: str, unit: str) -> None:
    (err,) = refused(one(code, unit, 1))
    assert "unit" in err["detail"]


@pytest.mark.parametrize("value", ["72", True, None, float("nan"), float("inf"), [72]])
def test_values_are_finite_numbers(value: Any) -> None:
    (err,) = refused(one("8867-4", "/min", value))
    assert err["pointer"] == "/readings/0"


def test_unknown_codes_and_extra_fields_are_refused() -> None:
    errors = refused(
        one("1234-5", "/min", 70),
        {**one("8867-4", "/min", 70), "note": "free text is PHI"},
        one("8867-4", "/min", 70),
    )
    assert [e["index"] for e in errors] == [0, 1]


def test_the_blood_pressure_panel() -> None:
    (r,) = check(bp(130, 85, NOW - 5))
    assert [c["code"] for c in r["components"]] == ["8480-6", "8462-4"]
    assert [c["value"] for c in r["components"]] == [130, 85]
    assert refused(bp(80, 120, NOW - 5))[0]["detail"].startswith("systolic")
    missing = bp(130, 85, NOW - 5)
    missing["components"] = missing["components"][:1]
    assert refused(missing)
    wrong = bp(130, 85, NOW - 5)
    wrong["components"][1]["code"] = "8867-4"
    assert refused(wrong)
    with_value = {**bp(130, 85, NOW - 5), "value": 1, "unit": "mm[Hg]"}
    assert refused(with_value)
    kpa = bp(130, 85, NOW - 5)
    kpa["components"][0]["unit"] = "kPa"
    assert "unit" in refused(kpa)[0]["detail"]


def test_times_not_in_the_future_beyond_the_skew_nor_older_than_the_window() -> None:
    check(one("8867-4", "/min", 70, NOW + 59), one("8867-4", "/min", 71, NOW - 3599))
    errors = refused(
        one("8867-4", "/min", 70, NOW + 120),
        one("8867-4", "/min", 70, NOW - 4000),
        {**one("8867-4", "/min", 70), "time": "2026-12-01 10:00:00"},
        {**one("8867-4", "/min", 70), "time": "2026-12-01T10:00:00"},  # no offset
        {**one("8867-4", "/min", 70), "time": 1733000000},
    )
    assert [e["index"] for e in errors] == [0, 1, 2, 3, 4]
    assert "future" in errors[0]["detail"] and "older" in errors[1]["detail"]


def test_offsets_are_normalised_to_utc() -> None:
    # Local time 30 minutes behind UTC, labelled as such: the same instant as NOW.
    local = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(NOW - 1800))
    (r,) = check({"code": "8867-4", "unit": "/min", "value": 70, "time": local + "-00:30"})
    assert r["time"] == iso(NOW)


def test_one_bad_reading_refuses_the_whole_batch_naming_each_by_position() -> None:
    good = [one("8867-4", "/min", 60 + i, NOW - 100 + i) for i in range(10)]
    good[3]["value"] = 999
    good[7]["unit"] = "bpm"
    errors = refused(*good)
    assert [(e["index"], e["pointer"]) for e in errors] == [(3, "/readings/3"), (7, "/readings/7")]


def test_batch_limits() -> None:
    with pytest.raises(InvalidBatch):
        check_readings([], NOW, LIMITS)
    with pytest.raises(InvalidBatch, match="at most 100"):
        check_readings([one("8867-4", "/min", 70)] * 101, NOW, LIMITS)
    with pytest.raises(InvalidBatch):
        check_readings({"not": "a list"}, NOW, LIMITS)


def test_the_same_code_at_the_same_time_twice_is_refused() -> None:
    errors = refused(one("8867-4", "/min", 70), one("8867-4", "/min", 71))
    assert [e["index"] for e in errors] == [1]


def test_an_integer_too_large_for_a_float_is_refused_by_position() -> None:
    # float(10**400) raises OverflowError: the reading is refused, not the request crashed.
    errors = refused(one("8867-4", "/min", 70), one("8867-4", "/min", 10**400, NOW - 20))
    assert [e["index"] for e in errors] == [1]
    assert errors[0]["detail"] == "value must be a finite number"


@pytest.mark.parametrize(
    "stamp",
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-W49-1T10:00:00Z", "YESTERDAY"],
)
def test_times_that_are_not_rfc_3339_instants_are_refused_naming_the_form(stamp: str) -> None:
    # The first two parse, then overflow when converted to UTC; the third is ISO 8601 but
    # not RFC 3339. The detail names the form, never Python's "Invalid isoformat string".
    (error,) = refused({**one("8867-4", "/min", 70), "time": stamp})
    assert "RFC 3339" in error["detail"] and "isoformat" not in error["detail"]


@pytest.mark.parametrize("code", ["1234-5", "8867-4", None, ["8480-6"]])
def test_a_blood_pressure_component_outside_the_panel_is_refused(code: Any) -> None:
    # Looked up in the table as it came: a KeyError (500) for a code not in it.
    reading = bp(120, 80, NOW - 10)
    reading["components"][0]["code"] = code
    (error,) = refused(reading)
    assert "two components" in error["detail"]
