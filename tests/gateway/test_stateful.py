"""Schemathesis's stateful testing against a live gateway: sequences of calls chained by
the OpenAPI links of /openapi.json (an invite, its enrollment, the new client's token, then
the calls that need what came before: its identity, its consents, its calls), not only
one operation at a time (tests/gateway/test_openapi.py).

A schema cannot sign: the machine holds the private keys. It puts a fresh key's JWK into
each enrollment it sends, signs a private_key_jwt client assertion and a DPoP proof for each
token request of a client it enrolled, and a DPoP proof (with ``ath``) for every call that
needs a token. A call runs as the identity whose token the scenario obtained last, or
before that as the standing identity of its area (admin, auditor, patient, provider,
enrolled before the run). Values a schema cannot state are filled in when the generated
one cannot be right: a valid NPI for a provider invite, an enrolled patient for a device
invite or a call, a consent's end inside its window. Checks: no 5xx, and every status,
content type, header and body as documented.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import jwt
import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.auth.enroll import npi_valid
from gateway.auth.names import check_display_name
from gateway.client import Session, enroll
from gateway.errors import BadRequest
from tests.gateway.conftest import LiveGateway

ROOT = Path(__file__).resolve().parents[2]
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
NPI = next(n for n in (f"123456789{d}" for d in range(10)) if npi_valid(n))
#: The standing identity each area's calls run as before a scenario has a token.
AREAS = (
    ("/v1/audit", "auditor"),
    ("/v1/patients/{patient}/access-report", "auditor"),
    ("/v1/consents", "patient"),
    ("/v1/sessions", "provider"),
    ("/v1/emergency-access", "provider"),
    ("/v1/patients/{id}/vitals", "provider"),
    ("/v1/turn-credentials", "provider"),
    ("/v1/vitals", "provider"),
)


def _b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64u(key.public_key().public_bytes_raw())}


def _proof(key: Ed25519PrivateKey, method: str, url: str, token: str | None = None) -> str:
    claims: dict[str, Any] = {
        "jti": secrets.token_urlsafe(16),
        "htm": method,
        "htu": url.split("?", 1)[0],
        "iat": int(time.time()),
    }
    if token is not None:
        claims["ath"] = _b64u(hashlib.sha256(token.encode()).digest())
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"typ": "dpop+jwt", "jwk": _jwk(key)})


def _assertion(key: Ed25519PrivateKey, client: str, endpoint: str) -> str:
    now = int(time.time())
    claims = {"iss": client, "sub": client, "aud": endpoint, "iat": now, "exp": now + 120}
    return jwt.encode({**claims, "jti": secrets.token_urlsafe(16)}, key, algorithm="EdDSA")


def _only(body: dict[str, Any], keys: set[str]) -> None:
    """The documented members: the schema allows others, which the gateway refuses."""
    for k in set(body) - keys:
        del body[k]


def _plain_name(body: dict[str, Any]) -> None:
    try:
        if "display_name" in body:
            check_display_name(body["display_name"])
    except BadRequest:
        body["display_name"] = "Jane Doe"


class World:
    """The gateway and its standing identities: an admin enrolled from a local invite, and
    the auditor, patient and provider it invited; the patient consents to calls with any
    provider, so a provider's call with them can be scheduled."""

    def __init__(self, gw: LiveGateway) -> None:
        self.gw = gw
        self.url = gw.url
        admin = self._local_invite("admin")
        self.sessions: dict[str, Session] = {"admin": Session(enroll(self.url, admin))}
        for role, extra in (("auditor", {}), ("patient", {}), ("provider", {"npi": NPI})):
            invite = self.sessions["admin"].post_json("/v1/invites", {"role": role, **extra})
            self.sessions[role] = Session(enroll(self.url, invite["invite"]))
        self.patient = self.sessions["patient"].creds.sub
        #: (method, path, status, as a client the scenario enrolled) of every call made.
        self.seen: Counter[tuple[str, str, int, bool]] = Counter()
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 300 * 86400))
        grant = {"grantee": "role:provider", "scopes": ["call", "vitals.read"], "until": until}
        self.sessions["patient"].post_json("/v1/consents", grant)

    def _local_invite(self, role: str) -> str:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "invite",
                role,
                "--data-dir",
                str(self.gw.data_dir),
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "TELEGATE_LOG_ORIGIN": "live.example/telegate/log"},
        )
        return out.stdout.strip()

    def standing(self, path: str) -> Session:
        for prefix, role in AREAS:
            if path.startswith(prefix):
                return self.sessions[role]
        return self.sessions["admin"]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    # One source sends many refused requests: the refusal limiter is not under test here
    # (tests/gateway/attacks/test_refusal_flood.py), the sequences are.
    monkeypatch.setenv("TELEGATE_REFUSAL_BURST", "1000000")
    gw = LiveGateway(tmp_path / "data")
    try:
        yield World(gw)
    finally:
        gw.stop()


def _machine(world: World) -> Any:
    # The chains are the document's own links: schemathesis's dependency analysis would add
    # links it infers from the named response schemas (a Session's id to every
    # /v1/sessions/{id} operation, ...), and the few examples of this run would be spent on
    # those instead of on enrollment and its token.
    config = SchemathesisConfig.from_dict(
        {"phases": {"stateful": {"inference": {"algorithms": ["location-headers"]}}}}
    )
    schema = schemathesis.openapi.from_url(f"{world.url}/openapi.json", config=config)
    # The signalling socket upgrades to a WebSocket: not an HTTP exchange to chain.
    schema = schema.exclude(path="/v1/sessions/{id}/ws")
    base = schema.as_state_machine()

    class Machine(base):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            # Keys of the clients this scenario enrolled (by client id), the one being
            # enrolled, and the token obtained last with the key it is bound to.
            self.keys: dict[str, Ed25519PrivateKey] = {}
            self.enrolling: Ed25519PrivateKey | None = None
            self.current: tuple[str, Ed25519PrivateKey] | None = None

        def _known(self, sub: Any) -> bool:
            standing = {s.creds.sub for s in world.sessions.values()}
            return isinstance(sub, str) and (sub in self.keys or sub in standing)

        def before_call(self, case: Any) -> None:
            method, path = case.method.upper(), case.path
            body = case.body if isinstance(case.body, dict) else None
            url = f"{world.url}{case.formatted_path}"
            case.headers = dict(case.headers or {})
            positive = case.meta is None or case.meta.generation.mode.value == "positive"
            if body is not None and positive:
                self._fill(method, path, body)
            if (method, path) == ("POST", "/v1/enroll"):
                self.enrolling = Ed25519PrivateKey.generate()
                if body is not None:
                    body["jwk"] = _jwk(self.enrolling)
                return
            if (method, path) == ("POST", "/oauth/token"):
                key = self.keys.get(body.get("client_id")) if body is not None else None
                if body is not None and key is not None:
                    _only(body, {"client_id"})
                    body.update(
                        grant_type="client_credentials",
                        client_assertion_type=ASSERTION_TYPE,
                        client_assertion=_assertion(key, body["client_id"], url),
                    )
                    case.headers["DPoP"] = _proof(key, method, url)
                return
            operation = case.operation.definition.raw
            if "security" not in operation:
                return
            if self.current is not None:
                token, key = self.current
            else:
                session = world.standing(path)
                token, key = session.token(), session.creds.key
            case.headers["Authorization"] = f"DPoP {token}"
            case.headers["DPoP"] = _proof(key, method, url, token)

        def _fill(self, method: str, path: str, body: dict[str, Any]) -> None:
            """What a schema cannot say, where the generated value cannot be right (only
            in schema-valid cases: a negative case is sent as generated)."""
            if (method, path) == ("POST", "/v1/invites"):
                _only(body, {"role", "npi", "patient", "display_name"})
                if body.get("role") == "provider":
                    body["npi"] = NPI
                if body.get("role") == "device" and not self._known(body.get("patient")):
                    body["patient"] = world.patient
                _plain_name(body)
            elif (method, path) == ("POST", "/v1/enroll"):
                _only(body, {"invite", "jwk", "serial", "model", "display_name"})
                body.setdefault("serial", "SN-1")
                body.setdefault("model", "Scale 2")
                _plain_name(body)
            elif (method, path) == ("POST", "/v1/sessions") and "patient" in body:
                if not self._known(body["patient"]):
                    body["patient"] = world.patient
            elif (method, path) == ("POST", "/v1/consents"):
                days = 1 + secrets.randbelow(300)
                end = time.gmtime(time.time() + days * 86400)
                body["until"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", end)

        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            method, path = case.method.upper(), case.path
            world.seen[method, path, response.status_code, self.current is not None] += 1
            if (method, path) == ("POST", "/v1/enroll") and response.status_code == 201:
                assert self.enrolling is not None
                self.keys[response.json()["client_id"]] = self.enrolling
            elif (method, path) == ("POST", "/oauth/token") and response.status_code == 200:
                key = (
                    self.keys.get(case.body.get("client_id"))
                    if isinstance(case.body, dict)
                    else None
                )
                if key is not None:
                    self.current = (response.json()["access_token"], key)

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    return Machine


def test_stateful_sequences_find_no_500_and_no_schema_break(world: World) -> None:
    machine = _machine(world)
    machine.run(
        settings=hypothesis.settings(
            max_examples=int(os.environ.get("TELEGATE_STATEFUL_EXAMPLES", "30")),
            stateful_step_count=20,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(hypothesis.HealthCheck),
            phases=[hypothesis.Phase.generate],
            database=None,
        )
    )
    # The chains were walked, not only single calls: a client enrolled from an invite
    # got a token, and the token was used.
    seen = world.seen
    assert seen["POST", "/v1/enroll", 201, False], sorted(seen.items())
    assert seen["POST", "/oauth/token", 200, False], sorted(seen.items())
    assert any(as_enrolled for *_, as_enrolled in seen), sorted(seen.items())
