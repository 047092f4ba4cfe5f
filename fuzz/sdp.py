"""DTLS fingerprints out of an SDP offer or answer (``gateway.sessions.signalling``).

Properties: never raises; every fingerprint found names a hash function of RFC 8122 in
lower case and a value of colon-separated upper-case hex pairs that occurs (in any case)
in the SDP, on a line of its own beginning ``a=fingerprint:``.
"""

from __future__ import annotations

import re
import sys

from fuzz._harness import instrumented, main

with instrumented(__name__, hooks=("str", "RegEx")):
    from gateway.sessions.signalling import fingerprints

ALGORITHMS = {"sha-1", "sha-224", "sha-256", "sha-384", "sha-512", "md5", "md2"}
VALUE = re.compile(r"[0-9A-F]{2}(?::[0-9A-F]{2})+")


def check(data: bytes) -> None:
    sdp = data.decode("utf-8", "replace")
    found = fingerprints(sdp)
    assert len(found) <= sdp.count("a=fingerprint:")
    lines = sdp.upper().splitlines()
    for fp in found:
        assert fp["algorithm"] in ALGORITHMS and VALUE.fullmatch(fp["value"]), fp
        head = f"A=FINGERPRINT:{fp['algorithm'].upper()} {fp['value']}"
        assert any(line.rstrip() == head for line in lines), fp


if __name__ == "__main__":
    main(check)
    sys.exit(0)
