"""The JSON decoder for everything from outside (``gateway.jsonio``).

Properties: refusals are ``InvalidJSON`` only; an accepted value nests at most
``MAX_DEPTH`` deep, holds no integer beyond ``MAX_INT`` and no non-finite number, encodes
again as strict JSON and UTF-8, and decodes from that encoding to an equal value.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from fuzz._harness import instrumented, main

with instrumented(__name__):
    from gateway.jsonio import MAX_DEPTH, MAX_INT, InvalidJSON, loads


def _bounded(value: Any, depth: int = 1) -> None:
    if isinstance(value, dict | list):
        assert depth <= MAX_DEPTH
        for v in value.values() if isinstance(value, dict) else value:
            _bounded(v, depth + 1)
    elif isinstance(value, int) and not isinstance(value, bool):
        assert abs(value) <= MAX_INT
    elif isinstance(value, float):
        assert math.isfinite(value)


def check(data: bytes) -> None:
    try:
        value = loads(data)
    except InvalidJSON:
        return
    _bounded(value)
    encoded = json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    assert loads(encoded) == value


if __name__ == "__main__":
    main(check)
    sys.exit(0)
