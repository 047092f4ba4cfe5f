"""The Merkle tree of an event's moved units: every unit's proof verifies, nothing else's."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.supply.gs1 import InvalidIdentifier, lot_uri, parse_lot
from gateway.supply.units import moved_summary, unit_proof, verify_unit
from ledger.errors import InvalidProof


@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=40, unique=True))
def test_every_unit_proves_its_place(units: list[str]) -> None:
    summary = moved_summary(units)
    assert summary["count"] == len(units)
    for u in units:
        verify_unit(u, unit_proof(u, units), summary)


def test_a_unit_not_among_them_has_no_proof() -> None:
    units = [f"u{i}" for i in range(7)]
    summary = moved_summary(units)
    with pytest.raises(InvalidProof):
        unit_proof("other", units)
    proof = unit_proof("u3", units)
    with pytest.raises(InvalidProof):
        verify_unit("u4", proof, summary)  # another unit's proof
    with pytest.raises(InvalidProof):
        verify_unit("u3", proof, moved_summary(units[:6]))  # another set
    with pytest.raises(InvalidProof):
        verify_unit("u3", {**proof, "size": 9}, summary)
    with pytest.raises(InvalidProof):
        verify_unit("u3", None, summary)


@pytest.mark.parametrize(
    ("value", "gtin", "lot"),
    [
        # TDS 6.3.1's LGTIN pattern on the SGTIN example's GTIN (0614141.712345 -> 70614141123451)
        ("urn:epc:class:lgtin:0614141.712345.998877", "70614141123451", "998877"),
        ("https://id.gs1.org/01/70614141123451/10/998877", "70614141123451", "998877"),
        ("urn:epc:class:lgtin:4012345.012345.998877", "04012345123456", "998877"),  # EPCIS 9.6.3
        ("https://id.gs1.org/01/04012345123456/10/998877", "04012345123456", "998877"),  # its DL
        ("https://id.gs1.org/01/70614141123451/10/A%2FB", "70614141123451", "A/B"),
    ],
)
def test_lots(value: str, gtin: str, lot: str) -> None:
    assert parse_lot(value) == (gtin, lot)
    assert parse_lot(lot_uri(gtin, lot)) == (gtin, lot)


@pytest.mark.parametrize(
    "value",
    [
        "https://id.gs1.org/01/70614141123452/10/1",  # check digit
        "https://id.gs1.org/01/70614141123451",  # a GTIN, no lot
        "urn:epc:idpat:sgtin:4012345.098765.*",  # a pattern
        "urn:epc:class:lgtin:0614141.712345.123456789012345678901",  # lot too long
        None,
    ],
)
def test_not_lots(value: object) -> None:
    with pytest.raises(InvalidIdentifier):
        parse_lot(value)
