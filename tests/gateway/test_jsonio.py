"""The bounded JSON decoder and the RFC 3339 parser that every outside input goes through."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from gateway.errors import BadRequest
from gateway.jsonio import MAX_DEPTH, MAX_INT, InvalidJSON, loads
from gateway.rfc3339 import InvalidTime, parse_time, time_param

ACCEPTED: list[tuple[str, Any]] = [
    ('{"a": [1, 2.5, -3, true, null, "x"]}', {"a": [1, 2.5, -3, True, None, "x"]}),
    ("[" * MAX_DEPTH + "]" * MAX_DEPTH, json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)),
    ('"[[[[{{{{"', "[[[[{{{{"),  # brackets inside strings do not nest
    ('"a \\" [[["', 'a " [[['),
    (str(MAX_INT), MAX_INT),
    (str(-MAX_INT), -MAX_INT),
    ("1.7976931348623157e308", 1.7976931348623157e308),
    ('"\\ud83d\\ude00"', "\U0001f600"),  # a surrogate pair is one character
]

REFUSED: list[tuple[str, bytes | str]] = [
    ("deep-array", "[" * 2500 + "]" * 2500),
    ("deep-object", '{"a":' * 2500 + "1" + "}" * 2500),
    ("one-too-deep", "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)),
    ("int-too-large", str(MAX_INT + 1)),
    ("int-hundreds-of-digits", "1" * 400),
    ("int-thousands-of-digits", "1" * 5000),
    ("float-overflow", "1e999"),
    ("nan", "NaN"),
    ("infinity", "[-Infinity]"),
    ("lone-surrogate", '"\\ud800"'),
    ("lone-surrogate-key", '{"\\udc00": 1}'),
    ("not-utf8", b"\xff\xfe"),
    ("not-json", "{not json"),
]


@pytest.mark.parametrize(("text", "value"), ACCEPTED)
def test_ordinary_json_is_decoded(text: str, value: Any) -> None:
    assert loads(text) == value
    assert loads(text.encode()) == value


@pytest.mark.parametrize("data", [d for _, d in REFUSED], ids=[i for i, _ in REFUSED])
def test_hostile_json_is_a_bad_request(data: bytes | str) -> None:
    with pytest.raises(InvalidJSON) as e:
        loads(data, "the body")
    assert isinstance(e.value, BadRequest) and isinstance(e.value, ValueError)
    assert e.value.status == 400 and (e.value.detail or "").startswith("the body")


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2026-12-01T09:30:00Z", "2026-12-01T09:30:00+00:00"),
        ("2026-12-01t09:30:00.123456789z", "2026-12-01T09:30:00.123456+00:00"),
        ("2026-12-01T09:30:00+14:00", "2026-11-30T19:30:00+00:00"),
        ("2026-12-01T09:30:00-00:30", "2026-12-01T10:00:00+00:00"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00+00:00"),
    ],
)
def test_rfc_3339_times_are_read_as_utc(text: str, utc: str) -> None:
    assert parse_time(text) == dt.datetime.fromisoformat(utc)


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-14:00",  # after year 9999 in UTC
        "2026-12-01T09:30:00",  # no offset
        "2026-12-01 09:30:00Z",
        "2026-W49-1T09:30:00Z",  # ISO 8601 week date, not RFC 3339
        "20261201T093000Z",
        "2026-12-01T09:30:00+0100",
        "2026-12-01T09:30:00+24:00",
        "2026-02-30T09:30:00Z",
        "2026-12-01T24:00:00Z",
        "YESTERDAY",
        "２０２６-12-01T09:30:00Z",  # noqa: RUF001 (fullwidth digits are not ASCII digits)
        1733000000,
        None,
        "2026-12-01T09:30:00Z" + " " * 40,
    ],
)
def test_other_times_are_refused_naming_the_field_and_the_form(value: Any) -> None:
    with pytest.raises(InvalidTime) as e:
        parse_time(value, "since")
    assert str(e.value).startswith("since must be an RFC 3339 date-time")
    with pytest.raises(BadRequest) as b:
        time_param(value, "until")
    assert "until" in (b.value.detail or "") and "isoformat" not in (b.value.detail or "")
