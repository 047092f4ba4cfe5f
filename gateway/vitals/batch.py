"""A device's signed batch: JWS verification and reading-by-reading validation.

The body of ``POST /v1/vitals`` is a compact JWS (RFC 7515) signed by the device's enrolled
key, so anyone holding that public key can check the readings again later. Its payload is
either telegate's batch JSON (``typ: vitals+json``) or a FHIR R4 Bundle of Observations
(``cty: fhir+json``), both turned into the same normalised readings. Pure: no I/O; time is
passed in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature as InvalidSignatureError
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ledger.events import format_time

from ..auth.jwk import HolderKey, InvalidKey, b64u_decode, b64u_strict, unverified_part
from ..errors import BadRequest, GatewayError
from ..jsonio import loads
from ..rfc3339 import parse_time
from .codes import BP_COMPONENTS, BP_PANEL, CODES, UnitError, normalise

__all__ = [
    "Batch",
    "InvalidBatch",
    "InvalidSignature",
    "Limits",
    "check_readings",
    "parse_time",
    "verify_jws",
]

TYP = "vitals+json"
FHIR_CTY = "fhir+json"
BATCH_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
READING_KEYS = frozenset({"code", "unit", "value", "time", "components"})
COMPONENT_KEYS = frozenset({"code", "unit", "value"})


class InvalidBatch(GatewayError):
    """422: the batch is well-formed JSON but some readings are not acceptable. ``errors``
    lists each one by position (an RFC 9457 extension member with JSON pointers)."""

    status = 422
    slug = "invalid-vitals"
    title = "The batch has readings that cannot be accepted"


class InvalidSignature(GatewayError):
    status = 400
    slug = "invalid-signature"
    title = "The batch is not signed by this device's key"


@dataclass(frozen=True, slots=True)
class Limits:
    max_readings: int = 1000
    max_age: int = 7 * 86400  # seconds a device may buffer readings offline
    future_skew: int = 300  # seconds a device clock may run ahead


@dataclass(frozen=True, slots=True)
class Batch:
    """A verified, validated batch. ``readings`` are normalised (canonical units, UTC)."""

    batch_id: str
    readings: tuple[dict[str, Any], ...]
    payload: bytes  # exactly the signed bytes
    jws: str  # exactly what the device sent
    form: str  # "native" or "fhir"

    @property
    def codes(self) -> list[str]:
        return sorted({r["code"] for r in self.readings})

    @property
    def batch_hash(self) -> str:
        """SHA-256 of the JWS as received. Not guessable from readings: it covers the
        device's signature, which only the device can make."""
        return hashlib.sha256(self.jws.encode()).hexdigest()

    @property
    def sig_hash(self) -> str:
        return hashlib.sha256(b64u_decode(self.jws.rsplit(".", 1)[1])).hexdigest()

    @property
    def detached(self) -> str:
        """The JWS with its payload detached (RFC 7515 appendix F): the device's signature
        without the readings, safe to export."""
        head, _, sig = self.jws.split(".")
        return f"{head}..{sig}"


def _b64u(segment: str, what: str) -> bytes:
    try:
        return b64u_strict(segment)
    except ValueError as e:
        raise BadRequest(f"the JWS {what} is not base64url") from e


def verify_jws(jws: str, key: HolderKey, typ: str = TYP) -> tuple[dict[str, Any], bytes]:
    """Header and payload of a compact JWS made by ``key``, of type ``typ`` (a vitals batch
    unless said: the supply chain's signed documents use it too). The algorithm is the
    key's own (RFC 8725 3.1); ``crit`` and unencoded payloads are refused. Raises
    InvalidSignature."""
    if jws.count(".") != 2:
        raise BadRequest("the body is not a compact JWS")
    head, body, sig = jws.split(".")
    try:
        header = unverified_part(jws, 0)
    except InvalidKey as e:
        raise BadRequest("the JWS header is malformed") from e
    if header.get("alg") != key.alg:
        raise InvalidSignature(f"this device signs with {key.alg}")
    if "crit" in header or header.get("b64") is False:
        raise InvalidSignature("JWS extensions (crit, b64) are not accepted")
    if header.get("typ") != typ:
        raise InvalidSignature(f"the JWS typ must be {typ!r}")
    if "kid" in header and header["kid"] != key.jkt:
        raise InvalidSignature("the JWS kid is not this device's key thumbprint")
    signature, payload = _b64u(sig, "signature"), _b64u(body, "payload")
    signing_input = f"{head}.{body}".encode("ascii")
    try:
        if isinstance(key.key, Ed25519PublicKey):
            key.key.verify(signature, signing_input)
        else:
            # RFC 7518 section 3.4: ES256 signatures are R || S, 32 bytes each.
            if len(signature) != 64:
                raise InvalidSignature("an ES256 signature is 64 bytes")
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            key.key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignatureError as e:
        raise InvalidSignature("the device signature does not verify") from e
    return header, payload


def _number(value: Any) -> float:
    # bool is an int in Python, and NaN/Infinity parse from JSON: neither is a reading. An
    # int too large for a float is refused here too (float() would raise OverflowError).
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("value must be a finite number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError("value must be a finite number")
    return number


def _value(code: str, unit: Any, value: Any) -> dict[str, Any]:
    if not isinstance(unit, str) or len(unit) > 32:
        raise ValueError("unit must be a UCUM code")
    sent = _number(value)
    canonical = normalise(code, unit, sent)
    out: dict[str, Any] = {"code": code, "unit": CODES[code].unit, "value": canonical}
    if unit != CODES[code].unit:
        out["sent"] = {"unit": unit, "value": sent}
    return out


def _components(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or len(raw) != 2:
        raise ValueError(f"{BP_PANEL} has two components: {' and '.join(BP_COMPONENTS)}")
    out = []
    for c in raw:
        if not isinstance(c, dict) or set(c) - COMPONENT_KEYS:
            raise ValueError("a component has code, unit and value")
        if c.get("code") not in BP_COMPONENTS:  # any other code is not in the table: KeyError
            raise ValueError(f"{BP_PANEL} has two components: {' and '.join(BP_COMPONENTS)}")
        out.append(_value(str(c.get("code")), c.get("unit"), c.get("value")))
    by_code = {c["code"]: c for c in out}
    if sorted(by_code) != sorted(BP_COMPONENTS):
        raise ValueError(f"{BP_PANEL} has two components: {' and '.join(BP_COMPONENTS)}")
    if by_code["8480-6"]["value"] <= by_code["8462-4"]["value"]:
        raise ValueError("systolic pressure must be above diastolic")
    return [by_code[c] for c in BP_COMPONENTS]


def _reading(raw: Any, lo: dt.datetime, hi: dt.datetime, limits: Limits) -> dict[str, Any]:
    if not isinstance(raw, dict) or set(raw) - READING_KEYS:
        raise ValueError("a reading is an object of code, unit, value, time (or components)")
    code = raw.get("code")
    t = parse_time(raw.get("time"))
    if t > hi:
        raise ValueError("time is in the future")
    if t < lo:
        raise ValueError(f"time is older than {limits.max_age} seconds")
    if code == BP_PANEL:
        if "value" in raw or "unit" in raw:
            raise ValueError(f"{BP_PANEL} carries its values in components")
        return {
            "code": code,
            "time": format_time(t),
            "components": _components(raw.get("components")),
        }
    if not isinstance(code, str) or code not in CODES:
        raise ValueError(f"code {str(code)[:16]!r} is not an accepted LOINC vital sign")
    if "components" in raw:
        raise ValueError(f"only {BP_PANEL} has components")
    return {**_value(code, raw.get("unit"), raw.get("value")), "time": format_time(t)}


Pointer = Callable[[int], str]


def check_readings(
    raw: Any, now: float, limits: Limits, pointer: Pointer = lambda i: f"/readings/{i}"
) -> tuple[dict[str, Any], ...]:
    """Normalised readings, or InvalidBatch naming every bad one: a batch is all or nothing."""
    if not isinstance(raw, list) or not raw:
        raise InvalidBatch("readings must be a non-empty list", errors=[])
    if len(raw) > limits.max_readings:
        raise InvalidBatch(f"at most {limits.max_readings} readings in one batch", errors=[])
    when = dt.datetime.fromtimestamp(now, dt.UTC)
    lo = when - dt.timedelta(seconds=limits.max_age)
    hi = when + dt.timedelta(seconds=limits.future_skew)
    out, errors, seen = [], [], set()
    for i, r in enumerate(raw):
        try:
            reading = _reading(r, lo, hi, limits)
            if (reading["code"], reading["time"]) in seen:
                raise ValueError("the same code at the same time twice in one batch")
            seen.add((reading["code"], reading["time"]))
            out.append(reading)
        except (ValueError, UnitError) as e:
            errors.append({"index": i, "pointer": pointer(i), "detail": str(e)})
    if errors:
        raise InvalidBatch(f"{len(errors)} of {len(raw)} readings refused", errors=errors)
    return tuple(out)


def parse_native(payload: bytes) -> tuple[str, Any, dict[str, Any]]:
    """batch_id, raw readings and the rest of a ``vitals+json`` payload."""
    body = loads(payload, "the JWS payload")
    if not isinstance(body, dict) or set(body) - {"batch_id", "patient", "device", "readings"}:
        raise BadRequest("the payload has batch_id, readings and optionally patient, device")
    batch_id = body.get("batch_id")
    if not isinstance(batch_id, str) or not BATCH_ID.match(batch_id):
        raise BadRequest("batch_id is 1-64 characters of A-Z a-z 0-9 . _ -")
    return batch_id, body.get("readings"), body
