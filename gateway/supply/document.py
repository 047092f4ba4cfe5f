"""A party's signed EPCIS 2.0 document: signature, GS1's JSON Schema, and the events this
gateway records, each reduced to what the custody rules need.

The body of ``POST /v1/supply/events`` is a compact JWS (RFC 7515, ``typ: epcis+json``)
over an EPCIS 2.0 JSON-LD document, made with the submitting party's enrolled key: verified
with the code that verifies devices' vitals batches. The document must validate against
GS1's official schema (``schema/EPCIS-JSON-Schema.json``), compiled once a process. Pure:
no I/O.

The schema is checked with ``jsonschema_rs`` (Rust, about 50 times faster than
``jsonschema`` on this schema: the schema was most of the time of an ingest), with the same
format checks. ``jsonschema`` stays the reference: :func:`validator`, which the tests run on
a corpus beside :func:`fast_validator` and assert the same verdicts
(tests/supply/test_validators.py).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jsonschema_rs
import rfc8785
from jsonschema import Draft7Validator, FormatChecker

from ..auth.jwk import HolderKey
from ..errors import BadRequest, GatewayError
from ..jsonio import loads
from ..vitals import batch as vitals_batch
from .gs1 import InvalidIdentifier, Item, parse_item, parse_lot, parse_party

__all__ = [
    "TYP",
    "Document",
    "InvalidDocument",
    "InvalidSignature",
    "Limits",
    "SupplyEvent",
    "fast_validator",
    "parse_document",
    "validator",
    "verify_document",
]

#: The JWS ``typ`` of a signed EPCIS document (RFC 8725 3.11: explicit typing).
TYP = "epcis+json"
MAX_ERRORS = 10
EVENT_ID = re.compile(r"[!-~]{1,256}", re.ASCII)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
#: CBV 2.0 spells a business step, disposition or source/destination type as a bare word or
#: as its Web URI. (The EPCIS 2.0 schema refuses the ``urn:epcglobal:cbv:`` forms here.)
_VOCAB = (
    (re.compile(r"https://ref\.gs1\.org/cbv/BizStep-([a-z_]{1,40})"), "bizStep"),
    (re.compile(r"https://ref\.gs1\.org/cbv/Disp-([a-z_]{1,40})"), "disposition"),
    (re.compile(r"https://ref\.gs1\.org/cbv/SDT-([a-z_]{1,40})"), "sdt"),
)
#: What each supported (event type, action) may be, by CBV business step. A recall is an
#: ObjectEvent whose disposition is ``recalled``: CBV 2.0 has no recalling business step.
SUPPORTED = {
    ("ObjectEvent", "ADD"): frozenset({"commissioning"}),
    ("ObjectEvent", "OBSERVE"): frozenset({"shipping", "receiving", "dispensing"}),
    ("ObjectEvent", "DELETE"): frozenset({"decommissioning"}),
    ("AggregationEvent", "ADD"): frozenset({"packing"}),
    ("AggregationEvent", "DELETE"): frozenset({"unpacking"}),
}
RECALLING = "recalling"


class InvalidDocument(GatewayError):
    """422: signed and JSON, but not an EPCIS 2.0 document this gateway accepts. ``errors``
    lists the schema's complaints (JSON pointers), at most ten."""

    status = 422
    slug = "invalid-epcis"
    title = "The document is not an acceptable EPCIS 2.0 document"


class InvalidSignature(GatewayError):
    status = 400
    slug = "invalid-signature"
    title = "The document is not signed by this party's key"


@dataclass(frozen=True, slots=True)
class Limits:
    max_events: int = 1000
    #: Items an event names (epcList, or parentID + childEPCs): its ledger entry lists them
    #: all and must stay well under the ledger's 64 KiB entry limit.
    max_items: int = 256


@dataclass(frozen=True, slots=True)
class SupplyEvent:
    """One supported event, reduced. ``items`` are the epcList or childEPCs, in normal
    form; ``destination`` the GLN a shipment goes to; ``expiry`` an ISO date."""

    event_id: str
    event_hash: str  # SHA-256 (hex) of the event's RFC 8785 form, as the party sent it
    event_type: str
    action: str
    biz_step: str
    event_time: str
    items: tuple[Item, ...]
    parent: Item | None = None
    destination: str | None = None
    lot: str | None = None
    expiry: str | None = None
    #: A recall's lots (GTIN-14, lot), from its quantityList: every unit of each.
    lots: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Document:
    doc_hash: str  # SHA-256 (hex) of the JWS as received
    jws: str
    events: tuple[SupplyEvent, ...]


# RFC 3986 3.1: a URI starts with its scheme; it holds no space or control character.
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s\x00-\x1f\x7f]*")
# RFC 3339 5.6 date-time, as EPCIS 2.0 writes eventTime (fractions of any length).
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)


def _formats() -> FormatChecker:
    """The two formats GS1's schema names (``uri``, ``date-time``), asserted: a bare word
    where the schema wants a URI (``"bizStep": "recalling"``) is refused, as is an eventTime
    that is no time. Checked here rather than with jsonschema's optional format packages."""
    checker = FormatChecker(formats=())

    @checker.checks("uri")
    def uri(value: object) -> bool:
        return not isinstance(value, str) or _URI.fullmatch(value) is not None

    @checker.checks("date-time", raises=ValueError)
    def date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if not _DATE_TIME.fullmatch(value):
            return False
        # Python before 3.11 took no "Z"; fractions beyond microseconds are cut first.
        head, _, tail = value.partition(".")
        if tail:
            digits = re.match(r"[0-9]+", tail)
            assert digits is not None
            value = head + "." + digits[0][:6].ljust(6, "0") + tail[len(digits[0]) :]
        dt.datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
        return True

    return checker


@functools.lru_cache(maxsize=1)
def validator() -> Draft7Validator:
    """GS1's EPCIS 2.0 JSON Schema, checked and compiled once a process, its formats
    asserted."""
    text = resources.files(__package__).joinpath("schema/EPCIS-JSON-Schema.json").read_text()
    schema = json.loads(text)
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema, format_checker=_formats())


@functools.lru_cache(maxsize=1)
def fast_validator() -> Any:
    """The same schema and format checks as :func:`validator`, compiled by
    ``jsonschema_rs`` (what :func:`parse_document` uses)."""
    text = resources.files(__package__).joinpath("schema/EPCIS-JSON-Schema.json").read_text()
    checker = _formats()

    def check(name: str) -> Any:
        def conforms(value: object) -> bool:
            try:
                return bool(checker.conforms(value, name))
            except Exception:  # a format check that raises is a value that does not conform
                return False

        return conforms

    return jsonschema_rs.Draft7Validator(
        json.loads(text),
        formats={"uri": check("uri"), "date-time": check("date-time")},
        validate_formats=True,
        ignore_unknown_formats=False,
    )


def verify_document(jws: str, key: HolderKey) -> bytes:
    """The payload of ``jws`` once its signature by ``key`` verifies (the vitals batch
    verifier, with this document type). Raises InvalidSignature or BadRequest."""
    try:
        _, payload = vitals_batch.verify_jws(jws, key, typ=TYP)
    except vitals_batch.InvalidSignature as e:
        raise InvalidSignature(e.detail.replace("device", "party") if e.detail else None) from e
    return payload


def _word(value: Any, kind: str) -> str | None:
    if not isinstance(value, str):
        return None
    for pattern, k in _VOCAB:
        if k == kind and (m := pattern.fullmatch(value)):
            return m[1]
    return value


def _items(raw: Any, where: str, limits: Limits) -> tuple[Item, ...]:
    if not isinstance(raw, list):
        return ()
    if len(raw) > limits.max_items:
        raise InvalidDocument(f"{where}: at most {limits.max_items} items in one event", errors=[])
    out = []
    for i, value in enumerate(raw):
        try:
            out.append(parse_item(value))
        except InvalidIdentifier as e:
            raise InvalidDocument(f"{where}/{i}: {e}", errors=[]) from e
    if len({x.uri for x in out}) != len(out):
        raise InvalidDocument(f"{where}: the same item twice in one event", errors=[])
    return tuple(out)


def _destination(event: dict[str, Any], where: str) -> str | None:
    wanted = ("owning_party", "possessing_party", "location")
    found: dict[str, str] = {}
    for d in event.get("destinationList") or []:
        kind = _word(d.get("type"), "sdt")
        if kind not in wanted or kind in found:
            continue
        try:
            found[kind] = parse_party(d.get("destination"))
        except InvalidIdentifier as e:
            raise InvalidDocument(f"{where}/destinationList: {e}", errors=[]) from e
    for kind in wanted:  # custody goes to the owner, else to who holds it, else the place
        if kind in found:
            return found[kind]
    return None


def _lots(event: dict[str, Any], where: str, limits: Limits) -> tuple[tuple[str, str], ...]:
    """A recall's lots: the EPC classes of its quantityList (LGTIN, or Digital Link with a
    lot); a class without a lot (a whole GTIN) is refused, a recall names lots."""
    raw = event.get("quantityList") or []
    if len(raw) > limits.max_items:
        raise InvalidDocument(f"{where}: at most {limits.max_items} lots in one event", errors=[])
    out = []
    for i, q in enumerate(raw):
        try:
            out.append(parse_lot(q.get("epcClass")))
        except InvalidIdentifier as e:
            raise InvalidDocument(f"{where}/quantityList/{i}: {e}", errors=[]) from e
    return tuple(dict.fromkeys(out))


def _ilmd(event: dict[str, Any], where: str) -> tuple[str | None, str | None]:
    ilmd = event.get("ilmd")
    if not isinstance(ilmd, dict):
        return None, None
    lot, expiry = ilmd.get("cbvmda:lotNumber"), ilmd.get("cbvmda:itemExpirationDate")
    if lot is not None and (not isinstance(lot, str) or not 1 <= len(lot) <= 20):
        raise InvalidDocument(f"{where}/ilmd: a lot number is 1-20 characters", errors=[])
    if expiry is not None:
        try:
            if not isinstance(expiry, str) or not _DATE.fullmatch(expiry):
                raise ValueError(expiry)
            dt.date.fromisoformat(expiry)
        except ValueError as e:
            raise InvalidDocument(f"{where}/ilmd: an expiry date is YYYY-MM-DD", errors=[]) from e
    return lot, expiry


def _event(raw: dict[str, Any], i: int, limits: Limits) -> SupplyEvent:
    where = f"/epcisBody/eventList/{i}"
    etype, action = raw.get("type"), raw.get("action")
    event_id = raw.get("eventID")
    if not isinstance(event_id, str) or not EVENT_ID.fullmatch(event_id):
        raise InvalidDocument(f"{where}: every event needs an eventID (a URI)", errors=[])
    step = _word(raw.get("bizStep"), "bizStep")
    if etype == "ObjectEvent" and _word(raw.get("disposition"), "disposition") == "recalled":
        step = RECALLING
    elif step not in SUPPORTED.get((str(etype), str(action)), frozenset()):
        raise InvalidDocument(
            f"{where}: {etype} {action} {step or '(no bizStep)'} is not supported here; "
            "see docs/supply.md",
            errors=[],
        )
    assert step is not None
    parent = None
    lots: tuple[tuple[str, str], ...] = ()
    if etype == "AggregationEvent":
        items = _items(raw.get("childEPCs"), f"{where}/childEPCs", limits)
        try:
            parent = parse_item(raw.get("parentID"))
        except InvalidIdentifier as e:
            raise InvalidDocument(f"{where}/parentID: {e}", errors=[]) from e
        if step == "packing" and not items:
            raise InvalidDocument(f"{where}: packing names its childEPCs", errors=[])
        if parent.uri in {x.uri for x in items}:
            raise InvalidDocument(f"{where}: a parent cannot be its own child", errors=[])
    else:
        items = _items(raw.get("epcList"), f"{where}/epcList", limits)
        lots = _lots(raw, where, limits) if step == RECALLING else ()
        if not items and not lots:
            raise InvalidDocument(f"{where}: name the items in epcList", errors=[])
    destination = _destination(raw, where) if step == "shipping" else None
    if step == "shipping" and destination is None:
        raise InvalidDocument(f"{where}: a shipment names its destination party", errors=[])
    lot, expiry = _ilmd(raw, where) if step == "commissioning" else (None, None)
    try:
        canonical = rfc8785.dumps(raw)
    except rfc8785.CanonicalizationError as e:  # an integer past 2^53, which JCS cannot hold
        raise InvalidDocument(f"{where}: a number outside what RFC 8785 can hash", errors=[]) from e
    return SupplyEvent(
        event_id=event_id,
        event_hash=hashlib.sha256(canonical).hexdigest(),
        event_type=str(etype),
        action=str(action),
        biz_step=step,
        event_time=str(raw.get("eventTime")),
        items=items,
        parent=parent,
        destination=destination,
        lot=lot,
        expiry=expiry,
        lots=lots,
    )


def parse_document(jws: str, payload: bytes, limits: Limits) -> Document:
    """The supported events of a verified payload. Raises BadRequest (not JSON) or
    InvalidDocument (schema, unsupported event, identifier, limit)."""
    doc = loads(payload, "the JWS payload")
    if not isinstance(doc, dict) or doc.get("type") != "EPCISDocument":
        raise InvalidDocument("the payload is an EPCISDocument", errors=[])
    errors = [
        {"pointer": "/" + "/".join(str(p) for p in e.instance_path), "detail": e.message[:200]}
        for _, e in zip(range(MAX_ERRORS), fast_validator().iter_errors(doc), strict=False)
    ]
    if errors:
        raise InvalidDocument("the document does not follow the EPCIS 2.0 schema", errors=errors)
    events = doc.get("epcisBody", {}).get("eventList")
    if not isinstance(events, list) or not events:
        raise InvalidDocument("the document has no events", errors=[])
    if len(events) > limits.max_events:
        raise InvalidDocument(f"at most {limits.max_events} events in one document", errors=[])
    out = tuple(_event(e, i, limits) for i, e in enumerate(events))
    if len({e.event_id for e in out}) != len(out):
        raise InvalidDocument("the same eventID twice in one document", errors=[])
    return Document(hashlib.sha256(jws.encode()).hexdigest(), jws, out)


def check_jws_text(raw: bytes) -> str:
    """The compact JWS of a request body. Raises BadRequest."""
    try:
        return raw.decode("ascii").strip()
    except UnicodeDecodeError as e:
        raise BadRequest("a compact JWS is ASCII") from e
