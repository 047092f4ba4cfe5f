"""Two organizations on loopback, and what a provider of one does to work at the other.

Organization A and organization B each run a real gateway on a real port with its public
URL set, host a witness (``witness_config``) following the other's log, and submit their own
checkpoints to the other's witness and to one independent witness W that follows both.
Each has a trust list naming the other: A requires B's checkpoints to be cosigned by its own
witness and W (2 of 2, unless a test asks otherwise), and pins B's signing keys (or learns
them on first use).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from gateway.appkeys import LOG
from gateway.auth.keys import KeyRing
from gateway.auth.refusals import REFUSALS
from gateway.config import Config, WitnessPeer
from gateway.witness.keys import init_witness_key
from ledger.checkpoint import NotWitnessed, verify_witnessed
from ledger.errors import InvalidCheckpoint
from ledger.note import Verifier
from tests.gateway.idclient import Holder, call
from tests.witness.gateways import DEADLINE, WitnessServer, database_url, free_port, log_vkey

Client = TestClient[Any, Any]
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"


class Clock:
    """Wall-clock time plus an offset a test can move (never a sleep)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Org:
    """One organization: its gateway's data, keys, URL and (once started) test client."""

    name: str
    data: Path
    port: int
    log_vkey: str
    witness_vkey: str
    clock: Clock = field(default_factory=Clock)
    client: Client | None = None

    @property
    def origin(self) -> str:
        return f"{self.name}.example/telegate/log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def c(self) -> Client:
        assert self.client is not None, f"{self.name} is not running"
        return self.client

    @property
    def log(self) -> Verifier:
        return Verifier.from_vkey(self.log_vkey)

    def jwks(self) -> dict[str, Any]:
        """The gateway's attestation signing keys as its JWKS serves them."""
        ring = KeyRing.open(self.data / "keys" / "signing", int(time.time()))
        return ring.jwks(int(time.time()))

    def events(self, kind: str) -> list[dict[str, Any]]:
        ledger = self.c.server.app[LOG]
        entries = ledger.store.read_entries(0, ledger.size)
        return [e for e in map(json.loads, entries) if e["type"] == kind]


def make_org(root: Path, name: str) -> Org:
    """Keys ahead of the first start (log key, witness key, signing key), so peers can pin
    them in their configuration files."""
    data = root / name
    port = free_port()
    log = log_vkey(data, f"{name}.example/telegate/log")
    witness = init_witness_key(data / "witness" / "witness.skey", f"{name}.example/witness")[0]
    org = Org(name, data, port, log, witness.vkey)
    org.jwks()  # creates the first signing key
    return org


def peer_toml(
    peer: Org, witnesses: Sequence[str], k: int, *, tofu: bool = False, name: str | None = None
) -> str:
    """One ``[[peers]]`` table naming ``peer``; its keys pinned from a file, or TOFU."""
    keys = "jwks_tofu = true"
    if not tofu:
        path = peer.data.parent / f"{peer.name}.jwks.json"
        path.write_text(json.dumps(peer.jwks()))
        keys = f"jwks_file = {json.dumps(str(path))}"
    return (
        f"[[peers]]\nname = {json.dumps(name or peer.name)}\nissuer = {json.dumps(peer.url)}\n"
        f"log_vkey = {json.dumps(peer.log_vkey)}\nwitnesses = {json.dumps(list(witnesses))}\n"
        f"min_witnesses = {k}\n{keys}\n"
    )


def org_config(
    me: Org, peer: Org, independent: Sequence[WitnessServer], trust: str, **kw: Any
) -> Config:
    """``me`` hosts a witness for ``peer``'s log and submits to ``peer``'s and the
    independent ones; ``trust`` is its trust list's text."""
    witness_toml = me.data / "witness.toml"
    # No database_url: on PostgreSQL the hosted witness keeps its state in the gateway's.
    witness_toml.write_text(
        f'name = "{me.name}.example/witness"\ndata_dir = "witness"\n\n'
        f'[[logs]]\norigin = "{peer.origin}"\nvkey = "{peer.log_vkey}"\n'
    )
    trust_file = me.data / "trust.toml"
    trust_file.write_text(trust)
    settings: dict[str, Any] = {
        "data_dir": me.data,
        "log_origin": me.origin,
        "public_url": me.url,
        "witnesses": (
            WitnessPeer(f"{peer.url}/witness", peer.witness_vkey),
            *(w.peer for w in independent),
        ),
        "witness_rate": 50.0,
        "witness_backoff_max": 0.2,
        "witness_config": str(witness_toml),
        "trust_file": str(trust_file),
        "database_url": database_url(me.data),
    }
    settings.update(kw)
    return Config(**settings)


def independent_witness(root: Path, name: str, *orgs: Org) -> WitnessServer:
    first, *rest = orgs
    return WitnessServer(
        root, name, first.log_vkey, first.origin, also=[(o.origin, o.log_vkey) for o in rest]
    )


# -- what a provider of B does to work at A ----------------------------------------------
async def peer_token(
    b: Client, holder: Holder, resource: str | None, scope: str | None = None
) -> str:
    """An attestation of B, minted also for ``resource`` (RFC 8707) when given."""
    url = str(b.make_url("/oauth/token"))
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": holder.assertion(url),
    }
    if resource is not None:
        form["resource"] = resource
    if scope is not None:
        form["scope"] = scope
    resp = await b.post("/oauth/token", data=form, headers={"DPoP": holder.dpop("POST", url)})
    body = await resp.json()
    assert resp.status == 200, body
    return str(body["access_token"])


def claims_of(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    out: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return out


async def witnessed_receipt(
    b: Client, holder: Holder, token: str, witnesses: Sequence[str], k: int
) -> str:
    """B's receipt for ``token``'s issuance, fetched again until its checkpoint carries
    ``k`` cosignatures of ``witnesses``; the JSON text as B answered it."""
    jti = claims_of(token)["jti"]
    log = Verifier.from_vkey((await (await b.get("/ledger/vkey")).text()).strip())
    required = [Verifier.from_vkey(w) for w in witnesses]
    deadline = time.monotonic() + DEADLINE
    while True:
        resp = await call(b, "GET", f"/v1/attestations/{jti}/receipt", holder, token)
        text = await resp.text()
        assert resp.status == 200, text
        note = json.loads(text)["receipt"]["checkpoint"].encode()
        try:
            verify_witnessed(note, log, required, k)
            return text
        except (NotWitnessed, InvalidCheckpoint):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


async def exchange_response(
    a: Client, holder: Holder, token: str, receipt: str, **over: Any
) -> ClientResponse:
    """``POST /oauth/token`` at A: the token exchange, with a DPoP proof by ``holder``."""
    url = str(a.make_url("/oauth/token"))
    form = {
        "grant_type": EXCHANGE,
        "subject_token": token,
        "subject_token_type": ACCESS_TOKEN,
        "subject_token_receipt": receipt,
    }
    dpop = over.pop("dpop", None) or holder.dpop("POST", url)
    form.update(over)
    return await a.post("/oauth/token", data=form, headers={"DPoP": dpop})


async def exchange(a: Client, holder: Holder, token: str, receipt: str) -> dict[str, Any]:
    resp = await exchange_response(a, holder, token, receipt)
    body: dict[str, Any] = await resp.json()
    assert resp.status == 200, body
    return body


#: Refusals raised before the caller showed a token the peer signed and a DPoP proof made
#: with its key: anyone can send those, so they are counted (``auth.refused_summary``),
#: not each a ``federation.refused`` event. ``dpop`` and ``peer_unreachable`` happen on
#: either side of that line: their callers say which.
COUNTED = frozenset(
    {"malformed", "unknown_issuer", "unknown_key", "bad_token", "audience", "expired"}
    | {"not_yet_valid", "role", "key_continuity", "bad_jwks", "status_uri"}
)


async def refused(
    org: Org,
    resp: ClientResponse,
    reason: str,
    error: str = "invalid_grant",
    status: int = 400,
    *,
    counted: bool | None = None,
) -> dict[str, Any]:
    """Assert the exchange was refused with ``error`` and recorded with ``reason``: the
    ``federation.refused`` event's data or, for a refusal of anyone (``COUNTED``), the row
    of the summary that counts it once, after flushing the counts."""
    body = await resp.json()
    assert (resp.status, body.get("error")) == (status, error), body
    if reason in COUNTED if counted is None else counted:
        before = len(org.events("federation.refused"))
        await org.c.server.app[REFUSALS].flush_all()
        assert len(org.events("federation.refused")) == before
        summary = org.events("auth.refused_summary")[-1]["data"]
        [row] = [r for r in summary["counts"] if r["problem"] == "federation-refused"]
        assert row == {
            "route": "/oauth/token",
            "method": "POST",
            "status": status,
            "problem": "federation-refused",
            "error": reason,
            "count": 1,
        }, summary
        return dict(row)
    last = org.events("federation.refused")[-1]["data"]
    assert last["reason"] == reason, last
    return dict(last)
