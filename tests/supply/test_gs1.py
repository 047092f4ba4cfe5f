"""GS1 keys: check digits, GLNs, and the two spellings of an item turned into one
(vectors: tests/supply/vectors/gs1.json, with their sources)."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.supply.gs1 import (
    InvalidIdentifier,
    Item,
    check_digit,
    gln_valid,
    parse_item,
    parse_party,
)

V = json.loads((Path(__file__).parent / "vectors" / "gs1.json").read_text())


def _ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in rows]


@pytest.mark.parametrize("v", V["check_digits"], ids=_ids(V["check_digits"]))
def test_check_digit(v: dict[str, Any]) -> None:
    assert check_digit(v["digits"]) == v["check"]


@pytest.mark.parametrize("gln", V["glns"]["valid"])
def test_valid_gln(gln: str) -> None:
    assert gln_valid(gln)


@pytest.mark.parametrize("gln", V["glns"]["invalid"])
def test_invalid_gln(gln: Any) -> None:
    assert not gln_valid(gln)


@pytest.mark.parametrize("v", V["items"], ids=_ids(V["items"]))
def test_urn_and_digital_link_name_one_item(v: dict[str, Any]) -> None:
    a, b = parse_item(v["urn"]), parse_item(v["uri"])
    assert a == b
    assert (a.key, a.serial, a.uri) == (v["key"], v["serial"], v["uri"])
    # Any resolver host names the same item; the normal form is id.gs1.org's.
    other = v["uri"].replace("https://id.gs1.org", "https://example.com:8443")
    assert parse_item(other) == a


@pytest.mark.parametrize("v", V["parties"], ids=_ids(V["parties"]))
def test_party_and_location_glns(v: dict[str, Any]) -> None:
    assert parse_party(v["value"]) == v["gln"]


@pytest.mark.parametrize("v", V["bad_items"], ids=_ids(V["bad_items"]))
def test_refused_items(v: dict[str, Any]) -> None:
    with pytest.raises(InvalidIdentifier):
        parse_item(v["value"])


def test_a_wrong_gln_check_digit_in_a_digital_link_is_refused() -> None:
    with pytest.raises(InvalidIdentifier):
        parse_party("https://id.gs1.org/417/0614141123453")
    with pytest.raises(InvalidIdentifier):
        parse_party("urn:epc:id:pgln:0614141.1234")  # 11 digits


_SERIAL_CHARS = (
    "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
)


@given(
    prefix_len=st.integers(6, 12),
    digits=st.text("0123456789", min_size=13, max_size=13),
    serial=st.text(_SERIAL_CHARS, min_size=1, max_size=20),
)
def test_urn_round_trips_through_the_normal_form(prefix_len: int, digits: str, serial: str) -> None:
    # indicator + company prefix + item reference, as the URN splits them (TDS 6.3.1).
    indicator, prefix, ref = digits[0], digits[1 : 1 + prefix_len], digits[1 + prefix_len :]
    urn = f"urn:epc:id:sgtin:{prefix}.{indicator}{ref}.{urllib.parse.quote(serial, safe='')}"
    item = parse_item(urn)
    body = indicator + prefix + ref
    assert item == Item("sgtin", body + str(check_digit(body)), serial)
    assert parse_item(item.uri) == item
