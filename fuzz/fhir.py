"""A FHIR R4 Bundle of Observations as a vitals batch payload (``gateway.vitals.fhir``),
through the same reading checks as a native batch.

Properties: every refusal is a ``GatewayError`` (``BadRequest`` or ``InvalidBatch``),
never another exception; accepted readings, written out as Observations by
``observation()`` and read back as a Bundle, give the same readings again (FHIR in, FHIR
out, same values).
"""

from __future__ import annotations

import json
import sys

from fuzz._harness import instrumented, main

with instrumented(__name__):
    from gateway.errors import GatewayError
    from gateway.vitals.batch import Limits, check_readings
    from gateway.vitals.fhir import bundle_readings, observation

NOW = 1_800_000_000.0
LIMITS = Limits()


def check(data: bytes) -> None:
    try:
        batch_id, raw, _ = bundle_readings(data)
        readings = check_readings(raw, NOW, LIMITS)
    except GatewayError:
        return
    out = [observation(r, "pat-1", "dev-1", batch_id, i) for i, r in enumerate(readings)]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "identifier": {"value": batch_id},
        "entry": [{"resource": o} for o in out],
    }
    again_id, again_raw, subject = bundle_readings(json.dumps(bundle).encode())
    again = check_readings(again_raw, NOW, LIMITS)
    strip = [{k: v for k, v in r.items() if k != "sent"} for r in readings]
    assert (again_id, subject, list(again)) == (batch_id, "pat-1", strip), (again, readings)


if __name__ == "__main__":
    main(check)
    sys.exit(0)
