"""Re-checking an evaluation offline, from the patient's disclosure (``GET
/v1/programs/{id}/evaluations/{period}``) and the log's verifier key alone: the program is
the one its id names, the aggregates open the commitment on the log, the published rule
gives the recorded result on them, and the entry is in the log. ``telegate incentives
verify`` is the shell around ``recheck``.

Pure: bytes and JSON in, a summary out; raises RecheckFailed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ledger.errors import LedgerError
from ledger.events import Event, EventType, verify_commitment
from ledger.log import Receipt
from ledger.note import Verifier

from ..errors import GatewayError
from .aggregates import CODES
from .evaluate import aggregates_json
from .program import Program

__all__ = ["RecheckFailed", "Rechecked", "recheck"]

MAX_DISCLOSURE = 1 << 20


class RecheckFailed(GatewayError):
    """The disclosure does not re-derive what the log says."""

    status = 422
    slug = "recheck-failed"
    title = "The evaluation does not re-check"


@dataclass(frozen=True, slots=True)
class Rechecked:
    program: str
    name: str
    period: int
    result: bool | int
    points: int
    index: int
    checkpoint_size: int


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise RecheckFailed(f"{what} is missing")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise RecheckFailed(f"{what} is not base64") from None


def _aggregates(value: Any, days: int) -> dict[str, Any]:
    """The disclosed aggregates, in the one shape the evaluator builds."""
    fields = {"count", "days_with", "streak", "min", "max", "mean"}
    ok = (
        isinstance(value, dict)
        and set(value) == {"days", "codes"}
        and value["days"] == days
        and isinstance(value["codes"], dict)
        and all(
            c in CODES and isinstance(a, dict) and set(a) == fields
            for c, a in value["codes"].items()
        )
    )
    if not ok:
        raise RecheckFailed("the aggregates are not in the evaluator's shape")
    return dict(value)


def recheck(disclosure: Any, log: Verifier) -> Rechecked:
    """Re-derive the evaluation in ``disclosure`` and check it against its log entry.
    Raises RecheckFailed naming the first thing that does not hold."""
    if not isinstance(disclosure, dict):
        raise RecheckFailed("the disclosure is a JSON object")
    try:
        program = Program.from_canonical(str(disclosure.get("program", "")))
    except GatewayError as e:
        raise RecheckFailed(f"the program: {e}") from None
    pid = hashlib.sha256(program.canonical()).hexdigest()
    period = disclosure.get("period")
    if not isinstance(period, int) or isinstance(period, bool):
        raise RecheckFailed("period is missing")
    aggs = _aggregates(disclosure.get("aggregates"), program.period_days)
    salt = _b64(disclosure.get("salt"), "salt")
    entry = _b64(disclosure.get("entry"), "entry")
    try:
        receipt = Receipt.from_json(disclosure.get("receipt") or {})
        cp = receipt.verify(log, entry)
        event = Event.decode(entry)
    except LedgerError as e:
        raise RecheckFailed(f"the log entry: {e}") from None
    data = event.data
    if event.type != EventType.INCENTIVE_EVALUATED:
        raise RecheckFailed(f"entry {receipt.index} is not an evaluation")
    if data.get("program") != pid or data.get("period") != period:
        raise RecheckFailed(f"entry {receipt.index} is of another program or period")
    try:
        verify_commitment(salt, aggregates_json(aggs), str(data.get("commitment")))
    except (LedgerError, ValueError):
        raise RecheckFailed("the aggregates and salt do not open the commitment") from None
    result = program.rule().evaluate(aggs)
    points = (program.points if result else 0) if isinstance(result, bool) else result
    logged = data.get("result")
    if type(logged) is not type(result) or logged != result or data.get("points") != points:
        raise RecheckFailed(
            f"the rule gives {result!r} ({points} points) on the aggregates; the log says "
            f"{logged!r} ({data.get('points')!r} points)"
        )
    for claim in ("result", "points"):
        if claim in disclosure and disclosure[claim] != data.get(claim):
            raise RecheckFailed(f"the disclosure's {claim} is not the log's")
    return Rechecked(pid, program.name, period, result, points, receipt.index, cp.size)


def check_credential(sd_jwt: str, jwks: Any, rechecked: Rechecked) -> dict[str, Any]:
    """Check that a reward credential (SD-JWT, issuance or presentation form, without
    key binding) was signed by a key of ``jwks`` and that what it discloses is the
    re-checked evaluation: the program, and the period, result, points and evaluation
    index when disclosed (program and period at least). Every disclosure must be referenced
    by a signed digest (SD-JWT requires it; the reference verifier only drops the others).
    Returns the disclosed claims. Raises RecheckFailed."""
    from jwcrypto.common import JWException
    from jwcrypto.jwk import JWK
    from sd_jwt.verifier import SDJWTVerifier

    keys = {k.get("kid"): k for k in (jwks or {}).get("keys", []) if isinstance(k, dict)}
    parts = sd_jwt.strip().split("~")
    if len(parts) < 2 or parts[-1]:
        raise RecheckFailed("the credential is not an SD-JWT without key binding")

    def issuer_key(iss: str, header: dict[str, Any]) -> Any:
        if header.get("kid") not in keys:
            raise RecheckFailed("the credential's key is not in the JWKS")
        return JWK(**keys[header["kid"]])

    try:
        v = SDJWTVerifier(sd_jwt.strip(), issuer_key)
        claims: dict[str, Any] = v.get_verified_payload()
        signed = json.loads(_b64(parts[0].split(".")[1], "credential payload"))
    except (JWException, ValueError, KeyError, TypeError) as e:
        raise RecheckFailed(f"the credential does not verify: {e}") from None
    digests = set(signed.get("_sd", []))
    for d in parts[1:-1]:
        digest = base64.urlsafe_b64encode(hashlib.sha256(d.encode()).digest()).rstrip(b"=")
        if digest.decode() not in digests:
            raise RecheckFailed("the credential carries a disclosure its issuer did not sign")
    want = {
        "program": rechecked.program,
        "period": rechecked.period,
        "result": rechecked.result,
        "points": rechecked.points,
        "evaluation": rechecked.index,
    }
    if "program" not in claims or "period" not in claims:
        raise RecheckFailed("the credential must disclose program and period")
    for name, value in want.items():
        if name in claims and (claims[name] != value or type(claims[name]) is not type(value)):
            raise RecheckFailed(f"the credential's {name} is not the evaluation's")
    return claims
