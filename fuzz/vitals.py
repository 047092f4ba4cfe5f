"""A device's signed vitals batch (``gateway.vitals.batch``): the JWS, then the
``vitals+json`` payload and its readings, as ``Intake`` reads them.

The first byte picks what the rest is: (0) the compact JWS as the device posts it, or (1)
a payload that the harness signs with the device's fixed key, so the fuzzer reaches the
payload and reading checks behind the signature. Properties: every refusal is a
``GatewayError`` (400 or 422), never another exception; accepted readings are normalised
for good: checking them again gives them back unchanged.
"""

from __future__ import annotations

import sys
from typing import Any

from fuzz._harness import instrumented, main, text

with instrumented(__name__):
    from fuzz._keys import HOLDER, HOLDER_JWK, compact_jws
    from gateway.auth.jwk import HolderKey
    from gateway.errors import GatewayError
    from gateway.vitals.batch import TYP, Limits, check_readings, parse_native, verify_jws

DEVICE = HolderKey.from_jwk(HOLDER_JWK)
HEADER = {"alg": "EdDSA", "typ": TYP, "kid": DEVICE.jkt}
NOW = 1_800_000_000.0
LIMITS = Limits()


def _again(reading: dict[str, Any]) -> dict[str, Any]:
    """A normalised reading as a device would send it (without what it originally sent)."""
    return {k: v for k, v in reading.items() if k != "sent"}


def readings_stable(readings: tuple[dict[str, Any], ...], pointer: Any = None) -> None:
    """Checking normalised readings again gives them back (canonical units and times)."""
    again = check_readings([_again(r) for r in readings], NOW, LIMITS)
    assert again == tuple(_again(r) for r in readings), (again, readings)


def check(data: bytes) -> None:
    if not data:
        return
    jws = text(data[1:]) if data[0] % 2 == 0 else compact_jws(HEADER, data[1:], HOLDER)
    try:
        _, payload = verify_jws(jws, DEVICE)
        _, raw, _ = parse_native(payload)
        readings = check_readings(raw, NOW, LIMITS)
    except GatewayError:
        return
    readings_stable(readings)


if __name__ == "__main__":
    main(check)
    sys.exit(0)
