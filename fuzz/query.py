"""The audit API's query parameters (``gateway.audit.http``): filters, limits, cursors.

The input is a query string as a client sends it, parsed the way aiohttp parses
``request.query`` (yarl); ``GET /v1/audit/events``, ``/v1/audit/export`` and
``/v1/patients/{id}/access-report`` read it with ``_filters`` and ``_int``.

Properties: refusals are ``BadRequest`` (400), never another exception; accepted filters
are 1-128 printable characters, times are whole milliseconds within years 0001-9999, the
limit is 1..1000 and a cursor 0..2^62; a filter's description is JSON.
"""

from __future__ import annotations

import json
import sys

from fuzz._harness import instrumented, main, text

with instrumented(__name__):
    from yarl import URL

    from gateway.audit.http import MAX_LIMIT, _filters, _int
    from gateway.errors import BadRequest

# 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z in epoch milliseconds.
MIN_MS, MAX_MS = -62_135_596_800_000, 253_402_300_800_000


def check(data: bytes) -> None:
    try:
        q = URL.build(path="/v1/audit/events", query_string=text(data), encoded=True).query
    except (ValueError, UnicodeError):
        return  # not a request line aiohttp would hand to a handler
    try:
        filters = _filters(q)
    except BadRequest as e:
        assert e.status == 400
    else:
        for name in ("type", "actor", "subject", "session"):
            v = getattr(filters, name)
            assert v is None or (1 <= len(v) <= 128 and v.isprintable() and v == q[name])
        for ms in (filters.since_ms, filters.until_ms):
            assert ms is None or (type(ms) is int and MIN_MS <= ms <= MAX_MS)
        json.dumps(filters.describe(), allow_nan=False)
    for name, lo, hi in (("limit", 1, MAX_LIMIT), ("cursor", 0, 1 << 62)):
        try:
            v = _int(q, name, lo, lo, hi)
        except BadRequest as e:
            assert e.status == 400
            continue
        assert lo <= v <= hi and (name not in q or str(v) == q[name].lstrip("0").rjust(1, "0"))


if __name__ == "__main__":
    main(check)
    sys.exit(0)
