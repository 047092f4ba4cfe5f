"""A client generated from the live /openapi.json by an off-the-shelf generator
(openapi-python-client, from PyPI) runs a scenario against a live gateway: enrollment, a
DPoP-bound token, who-am-I, an invite, a consent granted and listed, a call scheduled, and the
ledger receipt of the token's issuance verified offline. The answers arrive as the generator's
typed models: if the document could not be generated from, or described a shape the gateway
does not send, this fails."""

from __future__ import annotations

import base64
import importlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import Config
from ledger.log import Receipt
from ledger.note import Verifier
from tests.conftest import need
from tests.gateway.idclient import Client, Holder, local_invite

#: Media types the generator has no body handling for: sent and received as bytes. The
#: document names them as they are (a compact JWS, a status list token).
CONFIG = {
    "content_type_overrides": {
        "application/jose": "application/octet-stream",
        "application/statuslist+jwt": "application/octet-stream",
    },
    "post_hooks": [],
}


def _generate(spec: dict[str, Any], where: Path) -> Any:
    """The generated package, imported. Fails on any generator warning: each is a piece of
    the document a client would not get."""
    tool = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent))
    need(tool is not None, "openapi-python-client (pip install -e '.[dev]')")
    assert tool is not None
    (where / "openapi.json").write_text(json.dumps(spec))
    (where / "config.json").write_text(json.dumps(CONFIG))
    out = subprocess.run(
        [
            tool,
            "generate",
            "--path",
            str(where / "openapi.json"),
            "--config",
            str(where / "config.json"),
            "--meta",
            "none",
            "--output-path",
            str(where / "tgclient"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Warning" not in out.stdout + out.stderr, out.stdout[-3000:] + out.stderr[-3000:]
    sys.path.insert(0, str(where))
    try:
        return importlib.import_module("tgclient")
    finally:
        sys.path.remove(str(where))


def _dpop_hook(holder: Holder, token: str | None) -> Any:
    """An httpx request hook that signs a fresh DPoP proof for each request (htu: the URL
    without its query, RFC 9449 4.2), bound to ``token`` when there is one."""

    async def hook(request: httpx.Request) -> None:
        htu = str(request.url.copy_with(query=None, fragment=None))
        request.headers["DPoP"] = holder.dpop(request.method, htu, token)

    return hook


@pytest.fixture
def where(tmp_path: Path) -> Any:
    """A directory for the generated package; its modules are forgotten afterwards."""
    yield tmp_path
    for m in [m for m in sys.modules if m == "tgclient" or m.startswith("tgclient.")]:
        del sys.modules[m]


async def test_a_generated_client_runs_a_scenario(
    client: Client, config: Config, where: Path
) -> None:
    # Generated from what the gateway serves, not from the module.
    spec = await (await client.get("/openapi.json")).json()
    tg = _generate(spec, where)
    models = importlib.import_module("tgclient.models")
    base = str(client.make_url("")).rstrip("/")
    call = {
        name: importlib.import_module(f"tgclient.api.default.{name}")
        for name in (
            "post_v1_enroll",
            "post_oauth_token",
            "get_v1_me",
            "post_v1_invites",
            "post_v1_consents",
            "get_v1_consents",
            "post_v1_sessions",
            "get_v1_attestations_jti_receipt",
        )
    }

    opened: list[Any] = []

    def made(c: Any) -> Any:
        opened.append(c)
        return c

    try:
        await _scenario(tg, models, call, base, config, client, made)
    finally:
        for c in opened:
            await c.get_async_httpx_client().aclose()


async def _scenario(
    tg: Any, models: Any, call: dict[str, Any], base: str, config: Config, client: Client, made: Any
) -> None:
    async def enroll(invite: str, holder: Holder) -> Any:
        anon = made(tg.Client(base_url=base))
        body = models.PostV1EnrollBody.from_dict({"invite": invite, "jwk": holder.jwk})
        done = await call["post_v1_enroll"].asyncio(client=anon, body=body)
        assert isinstance(done, models.Enrollment), done
        holder.sub = done.sub
        return done

    async def session(holder: Holder) -> Any:
        """An authenticated client: a token got with private_key_jwt and DPoP, then every
        request with its own DPoP proof."""
        token_url = f"{base}/oauth/token"
        anon = made(tg.Client(base_url=base))
        body = models.PostOauthTokenBody(
            grant_type="client_credentials",
            client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            client_assertion=holder.assertion(token_url),
        )
        # The token endpoint documents its DPoP header: the generated call takes it.
        proof = holder.dpop("POST", token_url)
        got = await call["post_oauth_token"].asyncio(client=anon, body=body, d_po_p=proof)
        assert isinstance(got, models.TokenResponse), got
        assert got.expires_in > 0
        hook = _dpop_hook(holder, got.access_token)
        return made(
            tg.AuthenticatedClient(
                base_url=base,
                token=got.access_token,
                prefix="DPoP",
                httpx_args={"event_hooks": {"request": [hook]}},
            )
        )

    adm = Holder()
    await enroll(local_invite(config), adm)
    adm_c = await session(adm)
    me = await call["get_v1_me"].asyncio(client=adm_c)
    assert isinstance(me, models.Me), me
    assert (me.sub, str(me.role)) == (adm.sub, "admin")

    people = {}
    for role, extra in (("patient", {}), ("provider", {"npi": "1234567893"})):
        body = models.PostV1InvitesBody.from_dict({"role": role, **extra})
        invite = await call["post_v1_invites"].asyncio(client=adm_c, body=body)
        assert isinstance(invite, models.InviteCreated), invite
        assert invite.receipt.inclusion_proof is not None
        h = Holder()
        await enroll(invite.invite, h)
        people[role] = (h, await session(h))
    (pat, pat_c), (prov, prov_c) = people["patient"], people["provider"]

    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    body = models.PostV1ConsentsBody.from_dict(
        {"grantee": prov.sub, "scopes": ["call", "vitals.read"], "until": until}
    )
    granted = await call["post_v1_consents"].asyncio(client=pat_c, body=body)
    assert isinstance(granted, models.ConsentGranted), granted
    assert granted.active is True
    for who in (pat_c, prov_c):
        listed = await call["get_v1_consents"].asyncio(client=who)
        assert isinstance(listed, models.ConsentList), listed
        assert [c.id for c in listed.consents] == [granted.id]

    body = models.PostV1SessionsBody.from_dict({"patient": pat.sub})
    scheduled = await call["post_v1_sessions"].asyncio(client=prov_c, body=body)
    assert isinstance(scheduled, models.SessionCreated), scheduled
    assert str(scheduled.state) == "scheduled"

    # The receipt of the patient's token: typed, then verified offline with the vkey.
    pat_me = await call["get_v1_me"].asyncio(client=pat_c)
    assert isinstance(pat_me, models.Me)
    rec = await call["get_v1_attestations_jti_receipt"].asyncio(pat_me.jti, client=pat_c)
    assert isinstance(rec, models.AttestationReceipt), rec
    vkey = await (await client.get("/ledger/vkey")).text()
    entry = base64.b64decode(rec.entry)
    receipt = Receipt.from_json(rec.receipt.to_dict())
    receipt.verify(Verifier.from_vkey(vkey.strip()), entry)
    assert receipt.index == rec.receipt.index
