"""RFC 3339 date-times from outside (``gateway.rfc3339``): reading times, query bounds.

Properties: refusals are ``InvalidTime`` only (``BadRequest`` through ``time_param``); an
accepted time is an aware UTC instant that can be compared, turned into a timestamp, and
written back in RFC 3339 to parse to the same instant.
"""

from __future__ import annotations

import datetime as dt
import sys

from fuzz._harness import instrumented, main

with instrumented(__name__):
    from gateway.errors import BadRequest
    from gateway.rfc3339 import InvalidTime, parse_time, time_param


def check(data: bytes) -> None:
    value = data.decode("utf-8", "replace")
    try:
        t = parse_time(value)
    except InvalidTime:
        try:
            time_param(value, "since")
        except BadRequest:
            return
        raise AssertionError("time_param accepted what parse_time refused") from None
    assert t.tzinfo is dt.UTC
    t.timestamp()
    assert parse_time(t.isoformat()) == t == time_param(value, "since")


if __name__ == "__main__":
    main(check)
    sys.exit(0)
