"""The one parser for times that come from outside: RFC 3339 date-times with an offset.

``datetime.fromisoformat`` is not that parser: it also takes week dates, basic format and
times without an offset, its errors quote Python internals, and an instant such as
``0001-01-01T00:00:00+14:00`` parses but overflows (``OverflowError``) once converted to
UTC. Here the grammar is RFC 3339 section 5.6 exactly, and every instant that parses can
be converted, compared and turned into a timestamp. Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from .errors import BadRequest

__all__ = ["FORM", "InvalidTime", "parse_time", "time_param"]

#: How every error names the accepted form.
FORM = "an RFC 3339 date-time with an offset, such as 2026-12-01T09:30:00Z"

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


class InvalidTime(ValueError):
    """Not an RFC 3339 date-time with an offset, or not a representable instant. The
    message names the accepted form, never Python's own wording."""


def parse_time(value: Any, name: str = "time") -> dt.datetime:
    """The instant ``value`` names, in UTC. Raises InvalidTime (a ValueError) saying that
    ``name`` must be ``FORM``."""
    m = _RFC3339.fullmatch(value) if isinstance(value, str) and len(value) <= 40 else None
    if m is None:
        raise InvalidTime(f"{name} must be {FORM}")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    micro = int((m.group(7) or "0").ljust(6, "0")[:6])
    try:
        if m.group(8):
            tz = dt.UTC
        else:
            hours, minutes = int(m.group(10)), int(m.group(11))
            if hours > 23 or minutes > 59:
                raise ValueError("offset out of range")
            sign = -1 if m.group(9) == "-" else 1
            tz = dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
        local = dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
        # Year 1 east of UTC or year 9999 west of it is not an instant datetime can hold.
        return local.astimezone(dt.UTC)
    except (ValueError, OverflowError) as e:
        raise InvalidTime(f"{name} must be {FORM} (between years 0001 and 9999 in UTC)") from e


def time_param(value: Any, name: str) -> dt.datetime:
    """``parse_time`` for a request field or query parameter: raises BadRequest (400)
    naming ``name`` and the accepted form."""
    try:
        return parse_time(value, name)
    except InvalidTime as e:
        raise BadRequest(str(e)) from e
