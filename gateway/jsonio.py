"""The one JSON decoder for anything that comes from outside: request bodies, signed
payloads, WebSocket messages, documents fetched from peers.

Python's ``json`` has no nesting limit (it recurses until ``RecursionError``), turns
``1e999`` into infinity, accepts ``NaN``, ``Infinity`` and integers of thousands of digits,
and lets ``\\ud800`` through as a string that cannot be encoded again. Each of those has
reached code that then failed with an internal error. This decoder refuses them all, so
everything past it can assume small, finite, encodable values, at about two to three
times the cost of ``json.loads`` (a 1,000-reading batch: about 3 ms). Pure: no I/O.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .errors import BadRequest

__all__ = ["MAX_DEPTH", "MAX_INT", "InvalidJSON", "loads"]

#: Deepest nesting of arrays and objects accepted. A FHIR Bundle of Observations needs
#: about ten; recursive code downstream (RFC 8785 canonicalization, validation) stays far
#: from the interpreter's recursion limit.
MAX_DEPTH = 32
#: Largest magnitude of an integer: what a 64-bit signed column or a JavaScript-safe
#: consumer can hold is all any field here needs.
MAX_INT = (1 << 63) - 1
_MAX_NUMBER_CHARS = 64

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class InvalidJSON(BadRequest, ValueError):
    """400: not JSON, or JSON beyond what the gateway accepts (depth, numbers, strings).
    Also a ValueError, like the ``json.JSONDecodeError`` it replaces, so a caller that maps
    a malformed document onto its own error keeps doing so."""

    slug = "invalid-json"
    title = "The JSON is malformed or exceeds the accepted limits"


class _Refused(ValueError):
    """Raised from the decoder's hooks; carries the reason to the caller."""


def _int(text: str) -> int:
    # The length check first: int() of thousands of digits is itself slow.
    value = int(text) if len(text.lstrip("-")) <= 19 else MAX_INT + 1
    if abs(value) > MAX_INT:
        raise _Refused(f"has an integer beyond {MAX_INT} in magnitude")
    return value


def _float(text: str) -> float:
    value = float(text) if len(text) <= _MAX_NUMBER_CHARS else math.inf
    if not math.isfinite(value):
        raise _Refused(f"has a number that is not finite or longer than {_MAX_NUMBER_CHARS} chars")
    return value


def _constant(name: str) -> Any:
    raise _Refused(f"has {name}, which is not a JSON number")


_DECODER = json.JSONDecoder(parse_int=_int, parse_float=_float, parse_constant=_constant)


def _too_deep(value: Any, max_depth: int) -> bool:
    """Whether arrays and objects nest deeper than ``max_depth`` (iteratively: the point
    is to stay away from the recursion limit)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if depth > max_depth:
            return True
        children = v.values() if isinstance(v, dict) else v
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _encodable(value: Any) -> bool:
    """No lone surrogate in any string or key (each would fail at ``.encode()``)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return True


def loads(data: bytes | str, what: str = "the body", max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of ``data`` (UTF-8 when bytes). ``what`` names the input in the
    error. Raises InvalidJSON (a BadRequest, 400) for malformed JSON, nesting deeper than
    ``max_depth``, an integer beyond ``MAX_INT``, a non-finite or overflowing number,
    ``NaN``/``Infinity``, or a string with a lone surrogate."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    except UnicodeDecodeError as e:
        raise InvalidJSON(f"{what} is not UTF-8") from e
    try:
        value = _DECODER.decode(text)
    except _Refused as e:
        raise InvalidJSON(f"{what} {e}") from e
    except RecursionError as e:
        # The C decoder counts its own depth against the recursion limit and stops cleanly
        # at about a thousand levels; anything between MAX_DEPTH and that is caught below.
        raise InvalidJSON(f"{what} nests arrays and objects deeper than {max_depth} levels") from e
    except ValueError as e:
        raise InvalidJSON(f"{what} is not valid JSON") from e
    few = text.count("[") + text.count("{") <= max_depth
    if isinstance(value, dict | list) and not few and _too_deep(value, max_depth):
        raise InvalidJSON(f"{what} nests arrays and objects deeper than {max_depth} levels")
    if _SURROGATE_ESCAPE.search(text) and not _encodable(value):
        raise InvalidJSON(f"{what} has a string with an unpaired UTF-16 surrogate")
    return value
