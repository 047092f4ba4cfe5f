"""`telegate supply verify` against a live gateway: the custody fetched and every proof
checked with the pinned vkey; a wrong key is refused with a clear message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest

from gateway.auth.jwk import HolderKey
from gateway.cli import main
from gateway.client import Credentials, Session, enroll
from ledger.note import Signer, Verifier
from tests.supply.world import commission, document, gln, receive, sgtin, ship


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The CLI in this process (a subprocess would import the gateway again: seconds)."""
    capsys.readouterr()
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _party(admin: Session, server: str, kind: str, g: str, path: Path) -> Credentials:
    inv = admin.post_json("/v1/invites", {"role": "party", "gln": g, "kind": kind})
    creds = enroll(server, inv["invite"])
    creds.save(path)
    return creds


def _post(creds: Credentials, *events: dict[str, Any]) -> None:
    kid = HolderKey.from_jwk(creds.jwk).jkt
    jws = jwt.api_jws.PyJWS().encode(
        json.dumps(document(*events)).encode(),
        creds.key,
        algorithm="EdDSA",
        headers={"typ": "epcis+json", "kid": kid},
    )
    Session(creds).request("POST", "/v1/supply/events", jws.encode(), "application/jose")


def test_supply_verify_checks_every_proof(
    live_gateway: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = live_gateway
    rc, code, err = _cli(capsys, "invite", "admin", "--data-dir", str(gw.data_dir))
    assert rc == 0, err
    admin = Session(enroll(gw.url, code.strip()))
    maker = _party(admin, gw.url, "manufacturer", gln(614141000000), tmp_path / "maker.json")
    dist = _party(admin, gw.url, "distributor", gln(401234500000), tmp_path / "dist.json")
    _post(maker, commission([sgtin("CLI1")]), ship([sgtin("CLI1")], gln(401234500000)))
    _post(dist, receive([sgtin("CLI1")]))

    dist_creds, maker_creds = str(tmp_path / "dist.json"), str(tmp_path / "maker.json")
    unit = "urn:epc:id:sgtin:0614141.712345.CLI1"
    rc, out, err = _cli(capsys, "supply", "verify", unit, "--credentials", dist_creds)
    assert rc == 0, err
    assert out.startswith(f"{sgtin('CLI1')}: active; 3 events verified against checkpoint")
    assert f"custodian {gln(401234500000)}" in out
    args = ("supply", "verify", sgtin("NO"), "--credentials", maker_creds, "--json")
    rc, out, err = _cli(capsys, *args)
    assert rc == 0 and json.loads(out)["status"] == "unknown", err

    # Another key for the same log name: every receipt's checkpoint signature fails.
    wrong = Signer.generate(Verifier.from_vkey(maker.log_vkey).name).vkey
    args = ("supply", "verify", unit, "--credentials", dist_creds, "--vkey", wrong)
    rc, out, err = _cli(capsys, *args)
    assert rc == 1 and err.startswith("error:") and "no signature by a known key" in err, err
    assert dist.sub.startswith("sup:")
