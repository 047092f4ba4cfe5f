"""Supply-chain parties: invited by an admin with a GS1 GLN and a kind, enrolled with a key
like every subject, their GLN on the ledger with the enrollment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.appkeys import LOG
from tests.gateway.idclient import Holder, call, enroll, invite_and_enroll
from tests.supply.world import World, gln


async def test_an_admin_invites_a_party_that_enrolls_with_its_gln(
    client: TestClient[Any, Any], tmp_path: Path
) -> None:
    w = await World.make(client, tmp_path / "data")
    p = await w.party("pharmacy", 761234500000)
    assert p.holder.sub.startswith("sup:")
    r = await call(client, "GET", "/v1/me", p.holder, p.token)
    me = await r.json()
    assert me["role"] == "party" and me["scope"] == ["supply.read", "supply.write"]
    log = client.app[LOG]
    entries = [json.loads(e) for e in log.store.read_entries(0, log.size)]
    enrolled = next(e for e in entries if e["actor"] == p.holder.sub)
    assert enrolled["type"] == "identity.enrolled"
    assert enrolled["data"]["gln"] == p.gln and enrolled["data"]["kind"] == "pharmacy"


#: Party invites refused, and what the problem names.
BAD_INVITES: list[tuple[dict[str, Any], str]] = [
    ({"gln": "0614141123453", "kind": "pharmacy"}, "GLN"),  # wrong check digit
    ({"gln": "061414112345", "kind": "pharmacy"}, "GLN"),  # 12 digits
    ({"gln": 614141123452, "kind": "pharmacy"}, "GLN"),  # not a string
    ({"kind": "pharmacy"}, "GLN"),
    ({"gln": "0614141123452", "kind": "wholesaler"}, "kind"),
    ({"gln": "0614141123452"}, "kind"),
]


async def test_a_party_invite_needs_a_valid_gln_and_kind(
    client: TestClient[Any, Any], tmp_path: Path
) -> None:
    w = await World.make(client, tmp_path / "data")
    for extra, why in BAD_INVITES:
        r = await call(
            client, "POST", "/v1/invites", w.admin, w.admin_token, json={"role": "party", **extra}
        )
        body = await r.json()
        assert r.status == 400 and why in body["detail"], (extra, body)


async def test_only_an_admin_invites_a_party(client: TestClient[Any, Any], tmp_path: Path) -> None:
    w = await World.make(client, tmp_path / "data")
    prov = await invite_and_enroll(client, w.admin, w.admin_token, "provider", npi="1234567893")
    from tests.gateway.idclient import get_token

    tok = await get_token(client, prov)
    r = await call(
        client,
        "POST",
        "/v1/invites",
        prov,
        tok,
        json={"role": "party", "gln": gln(614141000000), "kind": "manufacturer"},
    )
    assert r.status == 403
    # A party invites nobody.
    maker = await w.party("manufacturer", 614141000000)
    r = await call(client, "POST", "/v1/invites", maker.holder, maker.token, json={"role": "party"})
    assert r.status == 403


async def test_a_party_name_cannot_look_like_a_party_id(
    client: TestClient[Any, Any], tmp_path: Path
) -> None:
    w = await World.make(client, tmp_path / "data")
    invite = {"role": "party", "gln": gln(614141000000), "kind": "manufacturer"}
    r = await call(client, "POST", "/v1/invites", w.admin, w.admin_token, json=invite)
    code = (await r.json())["invite"]
    resp = await client.post(
        "/v1/enroll",
        json={"invite": code, "jwk": Holder().jwk, "display_name": "sup: Acme"},
    )
    assert resp.status == 400
    await enroll(client, code, Holder(), display_name="Acme Pharma")  # the invite is unspent
