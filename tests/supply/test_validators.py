"""The schema check in production (jsonschema_rs) against the reference (jsonschema): the
same verdict on every document of a corpus: GS1's own examples, documents of every event
this gateway takes, and the documents the refusal tests send outside the schema, plus
mutations of each field the schema types or formats."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.supply.document import fast_validator, validator
from tests.supply.test_security import OUTSIDE_SCHEMA
from tests.supply.world import (
    commission,
    decommission,
    dispense,
    document,
    gln,
    pack,
    recall,
    recall_lots,
    receive,
    sgtin,
    ship,
    sscc,
    unpack,
)

VECTORS = Path(__file__).parent / "vectors"

Mutation = Callable[[dict[str, Any]], None]


def _event(d: dict[str, Any]) -> dict[str, Any]:
    ev: dict[str, Any] = d["epcisBody"]["eventList"][0]
    return ev


#: Changes to one field each: types, formats, enumerations, required members.
MUTATIONS: dict[str, Mutation] = {
    "event-id-not-uri": lambda d: _event(d).update(eventID="not a uri"),
    "event-time-no-offset": lambda d: _event(d).update(eventTime="2026-12-03T10:00:00"),
    "event-time-fraction-9": lambda d: _event(d).update(eventTime="2026-12-03T10:00:00.123456789Z"),
    "event-time-offset": lambda d: _event(d).update(eventTime="2026-12-03T10:00:00+05:30"),
    "event-time-lowercase": lambda d: _event(d).update(eventTime="2026-12-03t10:00:00z"),
    "event-time-hour-25": lambda d: _event(d).update(eventTime="2026-12-03T25:00:00Z"),
    "event-time-number": lambda d: _event(d).update(eventTime=1733220000),
    "offset-bad": lambda d: _event(d).update(eventTimeZoneOffset="UTC"),
    "epc-list-object": lambda d: _event(d).update(epcList={"a": 1}),
    "epc-list-space": lambda d: _event(d).update(epcList=["urn:epc:id:sgtin: 1"]),
    "epc-list-empty": lambda d: _event(d).update(epcList=[]),
    "biz-step-uri": lambda d: _event(d).update(bizStep="https://ref.gs1.org/cbv/BizStep-shipping"),
    "biz-step-urn": lambda d: _event(d).update(bizStep="urn:epcglobal:cbv:bizstep:shipping"),
    "biz-step-other-uri": lambda d: _event(d).update(bizStep="https://example.com/steps/x"),
    "disposition-word": lambda d: _event(d).update(disposition="recalled"),
    "disposition-bad": lambda d: _event(d).update(disposition="lost"),
    "read-point": lambda d: _event(d).update(readPoint={"id": "urn:epc:id:sgln:0614141.00777.0"}),
    "read-point-no-id": lambda d: _event(d).update(readPoint={}),
    "type-unknown": lambda d: _event(d).update(type="SomethingEvent"),
    "no-type": lambda d: _event(d).pop("type"),
    "no-action": lambda d: _event(d).pop("action"),
    "extension-field": lambda d: _event(d).update({"example:note": {"any": ["thing", 1]}}),
    "document-no-context": lambda d: d.pop("@context"),
    "document-body-list": lambda d: d.update(epcisBody=[]),
    "document-creation-offset": lambda d: d.update(creationDate="2026-12-03T10:00:00-01:00"),
    "document-type": lambda d: d.update(type="EPCISQueryDocument"),
}


def _corpus() -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = [
        (p.name, json.loads(p.read_text())) for p in sorted(VECTORS.glob("*.jsonld"))
    ]
    a, b, case = sgtin("A1"), sgtin("A2"), sscc(1)
    taken = {
        "commission": commission([a, b]),
        "ship": ship([a], gln(7612345000)),
        "receive": receive([a]),
        "dispense": dispense([a]),
        "decommission": decommission([a]),
        "recall": recall([a]),
        "recall-lots": recall_lots(["urn:epc:class:lgtin:0614141.712345.L1"]),
        "pack": pack(case, [a, b]),
        "unpack": unpack(case, [a]),
    }
    for name, ev in taken.items():
        out.append((name, document(ev)))
    for name, (mutate, _) in OUTSIDE_SCHEMA.items():
        doc = document(commission([a]))
        mutate(doc)
        out.append((f"outside-{name}", doc))
    for name, mutate in MUTATIONS.items():
        for base in ("commission", "ship", "pack"):
            doc = document(copy.deepcopy(taken[base]))
            mutate(doc)
            out.append((f"{base}-{name}", doc))
    return out


CORPUS = _corpus()


@pytest.mark.parametrize(("name", "doc"), CORPUS, ids=[n for n, _ in CORPUS])
def test_both_validators_give_the_same_verdict(name: str, doc: Any) -> None:
    reference = validator().is_valid(doc)
    assert fast_validator().is_valid(doc) == reference, name
    # And the errors parse_document reports exist exactly when the reference has some.
    assert bool(list(fast_validator().iter_errors(doc))) == (not reference), name


def test_the_corpus_has_both_verdicts() -> None:
    verdicts = [validator().is_valid(d) for _, d in CORPUS]
    assert verdicts.count(True) >= 20 and verdicts.count(False) >= 20, verdicts.count(True)
