"""Enrollment rules: who may invite whom, NPI validation, invite codes and subject ids."""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from ..errors import BadRequest
from .tokens import ROLE_PREFIX, Forbidden

__all__ = [
    "INVITE_RULES",
    "check_invite_request",
    "hash_code",
    "new_code",
    "new_subject_id",
    "npi_valid",
]

#: inviter role -> roles it may invite. A device invite names its patient and is an access
#: to that patient: besides this rule it needs the patient themself or their ``devices``
#: consent to the inviter, at invite and at redemption (``http.create_invite``, ``enroll``).
#: Admins keep the rule but hold no consent (grants name providers), so theirs are refused.
INVITE_RULES: dict[str, frozenset[str]] = {
    "admin": frozenset({"admin", "provider", "auditor", "patient", "device", "party"}),
    "provider": frozenset({"patient", "device"}),
    "patient": frozenset({"device"}),
}

_TEXT = re.compile(r"^[\w .,'@/:+()-]{1,128}$")
_SUBJECT = re.compile(r"^(adm|prov|pat|dev|aud|sup):[0-9a-f]{32}$")
#: What a supply-chain party may be (its invite's ``kind``).
PARTY_KINDS = frozenset({"manufacturer", "distributor", "pharmacy", "provider_organization"})


def npi_valid(npi: str) -> bool:
    """A US National Provider Identifier: 10 digits whose last is the Luhn check digit of
    the other nine prefixed by the ISO card issuer prefix 80840 (CMS NPI check digit)."""
    if not re.fullmatch(r"[0-9]{10}", npi):
        return False
    digits = [int(c) for c in "80840" + npi]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def new_code() -> str:
    """A single-use invite code: 256 bits, URL-safe.

    Never starting with "-": one in 64 URL-safe codes did, and a command line
    (`telegate enroll --invite CODE`) then read the code as an option.
    """
    return "inv_" + secrets.token_urlsafe(32)


def hash_code(code: str) -> str:
    # Only the hash is stored: a leaked database does not leak usable invites.
    return hashlib.sha256(code.encode()).hexdigest()


def new_subject_id(role: str) -> str:
    return f"{ROLE_PREFIX[role]}:{secrets.token_hex(16)}"


def is_subject_id(value: Any, role: str | None = None) -> bool:
    if not isinstance(value, str) or not _SUBJECT.fullmatch(value):
        return False
    return role is None or value.startswith(ROLE_PREFIX[role] + ":")


def check_invite_request(inviter_role: str, body: Any) -> tuple[str, dict[str, Any]]:
    """Validate ``POST /v1/invites``; returns the invited role and the invite's attributes.

    Raises Forbidden when the inviter may not invite that role, BadRequest when malformed.
    """
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    role = body.get("role")
    if not isinstance(role, str) or role not in ROLE_PREFIX:  # [] in a dict: TypeError
        raise BadRequest("role must be one of admin, provider, patient, device, auditor, party")
    if role not in INVITE_RULES.get(inviter_role, frozenset()):
        raise Forbidden(f"a {inviter_role} may not invite a {role}")
    attrs: dict[str, Any] = {}
    if role == "provider":
        npi = body.get("npi")
        if not isinstance(npi, str) or not npi_valid(npi):
            raise BadRequest("a provider invite needs a valid 10-digit NPI")
        attrs["npi"] = npi
    if role == "device":
        if not is_subject_id(body.get("patient"), "patient"):
            raise BadRequest("a device invite names the patient it reports for (pat:...)")
        attrs["patient"] = body["patient"]
    if role == "party":
        from ..supply.gs1 import gln_valid

        if not gln_valid(body.get("gln")):
            raise BadRequest("a party invite needs a valid 13-digit GS1 GLN")
        if body.get("kind") not in PARTY_KINDS:
            raise BadRequest(f"a party's kind is one of {', '.join(sorted(PARTY_KINDS))}")
        attrs["gln"], attrs["kind"] = body["gln"], body["kind"]
    name = body.get("display_name")
    if name is not None:
        # PHI: kept off-ledger in the identity store only. The rule a person's own name
        # follows at enrollment (NFC, one space, no id look-alike such as "prov: Dr X"):
        # an admin's invite must not name someone in a way they could not name themself.
        from .names import check_display_name

        attrs["display_name"] = check_display_name(name)
    unknown = set(body) - {"role", "npi", "patient", "display_name", "ttl", "gln", "kind"}
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(sorted(unknown))}")
    return str(role), attrs


def check_device_fields(body: dict[str, Any]) -> dict[str, str]:
    out = {}
    for field in ("serial", "model"):
        v = body.get(field)
        if not isinstance(v, str) or not _TEXT.fullmatch(v):
            raise BadRequest(f"a device enrolls with a {field} of 1-128 plain characters")
        out[field] = v
    return out
