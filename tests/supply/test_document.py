"""EPCIS documents, pure: GS1's own examples against GS1's schema, and how the events this
gateway supports are read (CBV spellings, destinations, lots and expiry dates)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import BadRequest
from gateway.supply.document import InvalidDocument, Limits, parse_document, validator
from tests.supply.world import commission, document, ship

VECTORS = Path(__file__).parent / "vectors"
EXAMPLES = sorted(VECTORS.glob("*.jsonld"))


def _parse(doc: Any) -> Any:
    return parse_document("a.b.c", json.dumps(doc).encode(), Limits())


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_gs1_examples_follow_gs1_schema(path: Path) -> None:
    assert list(validator().iter_errors(json.loads(path.read_text()))) == []


# What each GS1 example is to this gateway: they are snippets without the custody context
# (a shipment there names no destination party; a receipt counts a class, not units).
VERDICTS = {
    "Example_9.6.1-ObjectEvent.jsonld": "a shipment names its destination party",
    "Example_9.6.1-ObjectEventWithDigitalLink.jsonld": "a shipment names its destination party",
    "Example_9.6.2-ObjectEvent.jsonld": "name the items in epcList",
    "Example_9.6.2-ObjectEventWithDigitalLink.jsonld": "name the items in epcList",
    "Example_9.6.3-AggregationEvent.jsonld": "AggregationEvent OBSERVE receiving is not supported",
    "Example_9.6.3-AggregationEventWithDigitalLink.jsonld": "OBSERVE receiving is not supported",
}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_gs1_examples_outside_the_custody_rules_say_why(path: Path) -> None:
    with pytest.raises(InvalidDocument) as e:
        _parse(json.loads(path.read_text()))
    assert VERDICTS[path.name] in str(e.value.detail)


def test_the_first_example_event_is_read_once_given_its_destination() -> None:
    doc = json.loads((VECTORS / "Example_9.6.1-ObjectEvent.jsonld").read_text())
    first = doc["epcisBody"]["eventList"][0]
    first["destinationList"] = [
        {"type": "possessing_party", "destination": "urn:epc:id:sgln:0012345.11111.0"}
    ]
    doc["epcisBody"]["eventList"] = [first]
    (ev,) = _parse(doc).events
    assert ev.biz_step == "shipping" and ev.destination == "0012345111112"
    assert [i.uri for i in ev.items] == [
        "https://id.gs1.org/01/10614141073464/21/2017",
        "https://id.gs1.org/01/10614141073464/21/2018",
    ]


def test_cbv_spellings_and_the_destination_that_takes_custody() -> None:
    ev = ship(["urn:epc:id:sgtin:0614141.712345.9"], "0614141123452")
    ev["bizStep"] = "https://ref.gs1.org/cbv/BizStep-shipping"
    ev["destinationList"] = [
        {"type": "location", "destination": "urn:epc:id:sgln:4012345.00001.0"},
        {
            "type": "https://ref.gs1.org/cbv/SDT-owning_party",
            "destination": "urn:epc:id:pgln:0614141.12345",
        },
    ]
    (got,) = _parse(document(ev)).events
    assert got.biz_step == "shipping" and got.destination == "0614141123452"
    recall = commission(["urn:epc:id:sgtin:0614141.712345.9"])
    recall.update(action="OBSERVE", disposition="https://ref.gs1.org/cbv/Disp-recalled")
    recall.pop("bizStep")
    recall.pop("ilmd")  # instance master data belongs to ADD events only
    assert _parse(document(recall)).events[0].biz_step == "recalling"


def test_lot_and_expiry_come_from_the_commissioning_ilmd() -> None:
    (ev,) = _parse(
        document(commission(["urn:epc:id:sgtin:0614141.712345.9"], "A7", "2031-05-31"))
    ).events
    assert (ev.lot, ev.expiry) == ("A7", "2031-05-31")
    # The event's hash is over its RFC 8785 form: key order does not change it.
    raw = commission(["urn:epc:id:sgtin:0614141.712345.9"])
    again = dict(reversed(list(raw.items())))
    assert (
        _parse(document(raw)).events[0].event_hash == _parse(document(again)).events[0].event_hash
    )


def test_limits() -> None:
    events = [commission([f"urn:epc:id:sgtin:0614141.712345.{i}"]) for i in range(3)]
    with pytest.raises(InvalidDocument, match="at most 2 events"):
        parse_document("a.b.c", json.dumps(document(*events)).encode(), Limits(max_events=2))
    with pytest.raises(InvalidDocument, match="twice"):
        _parse(document(events[0], events[0]))
    with pytest.raises(InvalidDocument, match="no events"):
        _parse(document())
    with pytest.raises(BadRequest):
        parse_document("a.b.c", b"\xff", Limits())
    # A party extension with an integer JCS cannot hash (past 2^53): refused, not a 500.
    big = commission(["urn:epc:id:sgtin:0614141.712345.9"])
    big["example:count"] = 2**60
    with pytest.raises(InvalidDocument, match="RFC 8785"):
        _parse(document(big))
