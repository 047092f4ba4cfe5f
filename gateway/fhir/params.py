"""What ``/fhir`` implements, as one table (resources, interactions, search parameters) that
both the handlers and the CapabilityStatement read, and the strict parsing of a search's
query string against it (FHIR R4 search: https://hl7.org/fhir/R4/search.html).

Unknown parameters are refused with 400 unless the client sent ``Prefer: handling=lenient``
(then ignored), as the specification describes. Every value is bounded.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from ..errors import BadRequest
from ..rfc3339 import InvalidTime, parse_time

__all__ = [
    "DEFAULT_COUNT",
    "MAX_COUNT",
    "RESOURCES",
    "RESULT_PARAMS",
    "DateRange",
    "Param",
    "Resource",
    "Search",
    "parse_search",
]

MAX_COUNT = 1000
DEFAULT_COUNT = 100
MAX_VALUE = 256
MAX_PARAMS = 24
SP = "http://hl7.org/fhir/SearchParameter/"


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: str  # FHIR SearchParamType: token, reference, date, string
    definition: str
    doc: str
    #: May be given more than once (AND), as ``date=ge..&date=le..``.
    repeats: bool = False


@dataclass(frozen=True, slots=True)
class Resource:
    type: str
    interactions: tuple[str, ...]  # "read", "search-type"
    params: tuple[Param, ...]
    sorts: tuple[str, ...] = ()
    #: Bundle.link previous (keyset paging both ways) besides next.
    previous: bool = False

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


_PATIENT_DOC = "the patient's telegate subject id (pat:...)"
RESOURCES: dict[str, Resource] = {
    r.type: r
    for r in (
        Resource(
            "Observation",
            ("read", "search-type"),
            (
                Param("patient", "reference", SP + "clinical-patient", _PATIENT_DOC),
                Param(
                    "code", "token", SP + "clinical-code", "a LOINC code ([http://loinc.org|]code)"
                ),
                Param(
                    "category",
                    "token",
                    SP + "Observation-category",
                    "vital-signs or laboratory (observation-category)",
                ),
                Param(
                    "date",
                    "date",
                    SP + "clinical-date",
                    "effective time; prefixes eq ge le gt lt; YYYY-MM-DD or a date-time with zone",
                    repeats=True,
                ),
            ),
            sorts=("date", "-date"),
            previous=True,
        ),
        Resource(
            "AuditEvent",
            ("search-type",),
            (
                Param("patient", "reference", SP + "AuditEvent-patient", _PATIENT_DOC),
                Param("agent", "reference", SP + "AuditEvent-agent", "who acted (a subject id)"),
                Param(
                    "entity",
                    "reference",
                    SP + "AuditEvent-entity",
                    "what the event was about: a subject id or a session id",
                ),
                Param(
                    "date",
                    "date",
                    SP + "AuditEvent-date",
                    "when recorded; prefixes eq ge le gt lt",
                    repeats=True,
                ),
                Param("type", "token", SP + "AuditEvent-type", "DICOM or audit-event-type code"),
                Param(
                    "subtype",
                    "token",
                    SP + "AuditEvent-subtype",
                    "the ledger event type (urn:telegate:event-type), such as consent.used",
                ),
            ),
        ),
        Resource(
            "Consent",
            ("search-type",),
            (
                Param("patient", "reference", SP + "clinical-patient", _PATIENT_DOC),
                Param("status", "token", SP + "Consent-status", "active or inactive"),
                Param("actor", "reference", SP + "Consent-actor", "the grantee (a subject id)"),
            ),
        ),
        Resource(
            "Provenance",
            ("search-type",),
            (
                Param(
                    "target",
                    "reference",
                    SP + "Provenance-target",
                    "Observation/{id}: the signed vitals batch the reading came in",
                ),
            ),
        ),
    )
}
#: Result parameters every search takes (besides ``_sort`` where a resource has sorts).
RESULT_PARAMS = ("_count", "_cursor", "_format")
_COUNT = re.compile(r"[0-9]{1,5}", re.ASCII)
_DATE = re.compile(r"(eq|ge|le|gt|lt|ne|sa|eb|ap)?(.*)", re.ASCII | re.DOTALL)
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_US = dt.timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class DateRange:
    """Inclusive bounds, either open."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def narrowed(self, since: dt.datetime | None, until: dt.datetime | None) -> DateRange:
        lows = [x for x in (self.since, since) if x is not None]
        highs = [x for x in (self.until, until) if x is not None]
        return DateRange(max(lows) if lows else None, min(highs) if highs else None)


def _date_bounds(value: str) -> tuple[dt.datetime, dt.datetime]:
    """The first and last instant a date (whole UTC day) or date-time names."""
    if _DAY.fullmatch(value):
        try:
            day = dt.datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=dt.UTC)
        except ValueError as e:
            raise BadRequest(f"date {value!r} is not a calendar date") from e
        return day, day + dt.timedelta(days=1) - _US
    try:
        t = parse_time(value, "date")
    except InvalidTime as e:
        raise BadRequest("date is [prefix]YYYY-MM-DD or a date-time with a zone") from e
    return t, t


def parse_date(values: list[str]) -> DateRange:
    """``date`` values (AND-ed) as one inclusive range. Raises BadRequest."""
    out = DateRange()
    for raw in values:
        m = _DATE.fullmatch(raw)
        assert m is not None  # (.*) matches anything
        prefix, value = m[1] or "eq", m[2]
        if prefix not in ("eq", "ge", "le", "gt", "lt"):
            raise BadRequest(f"the date prefix {prefix!r} is not supported (eq ge le gt lt)")
        first, last = _date_bounds(value)
        since, until = {
            "eq": (first, last),
            "ge": (first, None),
            "gt": (last + _US, None),
            "le": (None, last),
            "lt": (None, first - _US),
        }[prefix]
        out = out.narrowed(since, until)
    return out


@dataclass(frozen=True, slots=True)
class Search:
    """A parsed search: each parameter's value(s), ``_count``, ``_sort`` and the cursor."""

    resource: Resource
    values: Mapping[str, tuple[str, ...]]
    count: int
    sort: str | None
    cursor: str | None

    def one(self, name: str) -> str | None:
        v = self.values.get(name)
        return v[0] if v else None

    def canonical(self) -> str:
        """The search itself, independent of order and paging: what a cursor is bound to."""
        parts = [f"{k}={v}" for k in sorted(self.values) for v in self.values[k]]
        return "&".join([self.resource.type, *parts, f"_sort={self.sort or ''}"])


def _lenient(request: web.Request) -> bool:
    prefer = request.headers.get("Prefer", "")
    tokens = {t.strip().lower().replace(" ", "") for t in prefer.split(",")[:8]}
    return "handling=lenient" in tokens


def parse_search(request: web.Request, resource: Resource) -> Search:
    """The query string of a search on ``resource``, checked against the table. Raises
    BadRequest for an unknown (unless lenient), repeated, empty or oversized parameter,
    a bad ``_count`` or ``_sort``."""
    q = request.query
    if len(q) > MAX_PARAMS:
        raise BadRequest(f"at most {MAX_PARAMS} search parameters")
    lenient = _lenient(request)
    values: dict[str, list[str]] = {}
    for name, value in q.items():
        if len(name) > 64 or len(value) > MAX_VALUE or not value.isprintable():
            raise BadRequest(f"each parameter is printable and at most {MAX_VALUE} characters")
        known = name in RESULT_PARAMS or (name == "_sort" and resource.sorts)
        param = resource.param(name)
        if not known and param is None:
            if lenient:
                continue
            raise BadRequest(
                f"{resource.type} has no search parameter {name[:64]!r} (send "
                "'Prefer: handling=lenient' to have unknown parameters ignored)"
            )
        if not value:
            raise BadRequest(f"{name} has an empty value")
        if name in values and (param is None or not param.repeats):
            raise BadRequest(f"{name} is given more than once")
        values.setdefault(name, []).append(value)
    count = DEFAULT_COUNT
    if "_count" in values:
        raw = values.pop("_count")[0]
        if not _COUNT.fullmatch(raw) or not 1 <= int(raw) <= MAX_COUNT:
            raise BadRequest(f"_count is an integer 1..{MAX_COUNT}")
        count = int(raw)
    sort = values.pop("_sort", [None])[0]
    if sort is not None and sort not in resource.sorts:
        raise BadRequest(f"_sort is one of {', '.join(resource.sorts)}")
    cursor = values.pop("_cursor", [None])[0]
    values.pop("_format", None)
    return Search(resource, {k: tuple(v) for k, v in values.items()}, count, sort, cursor)
