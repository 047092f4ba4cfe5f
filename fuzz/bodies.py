"""The JSON request bodies, each through the check its handler makes before any lookup.

The first byte picks the body, the rest is the JSON a client sends (through
``gateway.jsonio.loads``, as ``read_json`` does): (0) ``POST /v1/invites``
(``check_invite_request`` and ``invite_ttl``, by each inviting role), (1) ``POST /v1/enroll``
(``check_enrollment``, ``check_device_fields``, ``check_display_name``), (2) ``POST
/v1/consents`` (``check_grant``), (3) ``POST /v1/emergency-access`` (``check_emergency``),
(4) ``POST /v1/revocations`` (``check_revocation``), (5) ``POST /v1/patients/{id}/erase``
(``check_erasure``). Vitals batches (``vitals.py``, ``fhir.py``) and witness requests
(``witness.py``) have their own harnesses; ``POST /v1/sessions`` checks its body inline and
is fuzzed over HTTP by ``tests/gateway/test_stateful.py``.

Properties: a refusal is a ``GatewayError`` answered as a 4xx problem, never another
exception; an accepted body gives values inside the bounds the API documents (roles an
inviter may invite, valid NPIs, subject ids, lifetimes, consent scopes and windows, reason
codes), and names that come out of a check go through it again unchanged.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from typing import Any

from fuzz._harness import instrumented, main

with instrumented(__name__):
    from gateway.auth.enroll import (
        INVITE_RULES,
        check_device_fields,
        check_invite_request,
        is_subject_id,
        npi_valid,
    )
    from gateway.auth.http import check_enrollment, check_revocation, invite_ttl
    from gateway.auth.jwk import HolderKey
    from gateway.auth.names import MAX_NAME, check_display_name
    from gateway.consent.guard import ROLE_GRANTEE, SCOPES
    from gateway.consent.http import MAX_CONSENT_DAYS, check_emergency, check_grant
    from gateway.errors import GatewayError
    from gateway.jsonio import InvalidJSON, loads
    from gateway.vitals.http import REASONS, check_erasure

NOW = 1_800_000_000
MAX_TTL = 7 * 86400
INVITERS = sorted(INVITE_RULES)
_PLAIN = re.compile(r"[\w .,'@/:+()-]{1,128}")
_REFERENCE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _invite(body: Any, inviter: str) -> None:
    role, attrs = check_invite_request(inviter, body)
    ttl = invite_ttl(body, MAX_TTL)
    assert role in INVITE_RULES[inviter]
    assert 60 <= ttl <= MAX_TTL and type(ttl) is int
    assert set(attrs) <= {"npi", "patient", "display_name"}
    assert ("npi" in attrs) == (role == "provider") and ("patient" in attrs) == (role == "device")
    if "npi" in attrs:
        assert npi_valid(attrs["npi"])
    if "patient" in attrs:
        assert is_subject_id(attrs["patient"], "patient")
    if "display_name" in attrs:  # the rule of a name declared at enrollment, already applied
        assert check_display_name(attrs["display_name"]) == attrs["display_name"]


def _enroll(body: Any) -> None:
    code, key = check_enrollment(body)
    assert isinstance(code, str) and len(code) <= 128
    assert HolderKey.from_jwk(key.jwk).jkt == key.jkt
    fields = check_device_fields(body)
    assert set(fields) == {"serial", "model"}
    assert all(_PLAIN.fullmatch(v) for v in fields.values())


def _display_name(body: Any) -> None:
    name = check_display_name(body.get("display_name") if isinstance(body, dict) else body)
    assert 1 <= len(name) <= MAX_NAME and name == name.strip()
    assert unicodedata.is_normalized("NFC", name) and "  " not in name
    assert check_display_name(name) == name


def _grant(body: Any) -> None:
    grantee, scopes, end = check_grant(body, NOW)
    assert grantee == ROLE_GRANTEE or is_subject_id(grantee, "provider")
    assert scopes and list(scopes) == sorted(set(scopes)) and set(scopes) <= set(SCOPES)
    assert NOW < end <= NOW + MAX_CONSENT_DAYS * 86400


def _emergency(body: Any) -> None:
    patient, reason = check_emergency(body)
    assert is_subject_id(patient, "patient")
    assert 10 <= len(reason.strip()) <= 500


def _revocation(body: Any) -> None:
    reason = check_revocation(body)
    assert ("jti" in body) != ("sub" in body)
    assert 1 <= len(reason) <= 64 and reason.isidentifier()


def _erasure(body: Any) -> None:
    reason, ref = check_erasure(body)
    assert reason in REASONS
    assert ref is None or _REFERENCE.fullmatch(ref)


BODIES = (_invite, _enroll, _display_name, _grant, _emergency, _revocation, _erasure)


def check(data: bytes) -> None:
    if not data:
        return
    which = BODIES[data[0] % len(BODIES)]
    try:
        body = loads(data[1:], "the body")
    except InvalidJSON:
        return
    calls = [lambda b, r=r: _invite(b, r) for r in INVITERS] if which is _invite else [which]
    for call in calls:
        try:
            call(body)
        except GatewayError as e:
            assert 400 <= e.status < 500, e


if __name__ == "__main__":
    main(check)
    sys.exit(0)
