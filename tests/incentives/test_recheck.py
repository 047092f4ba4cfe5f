"""``telegate incentives verify``: a patient's disclosure re-derives the logged result
offline; anything forged is refused."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.incentives.recheck import RecheckFailed, recheck
from ledger.note import Verifier
from tests.gateway.idclient import call
from tests.incentives.conftest import IncentiveWorld

RULE = 'days_with("8867-4") >= 1 && mean("8867-4") < 90.0'


async def _disclosures(world: IncentiveWorld) -> tuple[dict[str, Any], dict[str, Any], str]:
    pid = await world.program(RULE)
    assert (await world.enroll(pid)).status == 201
    await world.heart(0, [70, 80])  # passes
    await world.heart(1, [95, 99])  # fails
    out = []
    for k in (0, 1):
        assert (await world.evaluate(pid, k)).status == 200
        resp = await call(
            world.client, "GET", f"/v1/programs/{pid}/evaluations/{k}", world.pat, world.pat_t
        )
        assert resp.status == 200
        out.append(await resp.json())
    vkey = await (await world.client.get("/ledger/vkey")).text()
    return out[0], out[1], vkey


async def test_the_cli_rechecks_a_disclosure_offline(
    world: IncentiveWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    passed, failed, vkey = await _disclosures(world)
    files = []
    for name, d in (("passed.json", passed), ("failed.json", failed)):
        (tmp_path / name).write_text(json.dumps(d))
        files.append(str(tmp_path / name))
    (tmp_path / "log.vkey").write_text(vkey)
    assert main(["incentives", "verify", *files, "--vkey", str(tmp_path / "log.vkey")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "period 0: result true, 5 points" in out[0]
    assert "period 1: result false, 0 points" in out[1]
    forged = {**failed, "result": True}
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    assert main(["incentives", "verify", str(tmp_path / "forged.json"), "--vkey", vkey]) == 1
    assert "refused" in capsys.readouterr().err


def _forge(d: dict[str, Any], how: str) -> dict[str, Any]:
    d = copy.deepcopy(d)
    if how == "aggregates":  # what would have passed: the commitment does not open
        d["aggregates"]["codes"]["8867-4"]["mean"] = 80.0
    elif how == "salt":
        d["salt"] = base64.urlsafe_b64encode(b"\0" * 32).decode()
    elif how == "program":  # a laxer rule over the same aggregates: another program id
        text = json.loads(d["program"])
        text["rule"] = 'days_with("8867-4") >= 1'
        d["program"] = json.dumps(text, separators=(",", ":"), sort_keys=True)
    elif how == "entry":  # a result rewritten in the log entry: not the leaf the log holds
        entry = json.loads(base64.urlsafe_b64decode(d["entry"] + "=="))
        entry["data"]["result"] = True
        raw = json.dumps(entry, separators=(",", ":"), sort_keys=True).encode()
        d["entry"] = base64.urlsafe_b64encode(raw).decode()
    elif how == "receipt":
        d["receipt"]["inclusion_proof"] = d["receipt"]["inclusion_proof"][:-1] or ["AAAA"]
    elif how == "period":
        d["period"] = 0
    return d


@pytest.mark.parametrize(
    ("how", "why"),
    [
        ("aggregates", "do not open the commitment"),
        ("salt", "do not open the commitment"),
        ("program", "another program or period"),
        ("entry", "the log entry"),
        ("receipt", "the log entry"),
        ("period", "another program or period"),
    ],
)
async def test_a_forged_disclosure_is_refused(world: IncentiveWorld, how: str, why: str) -> None:
    _passed, failed, vkey = await _disclosures(world)
    log = Verifier.from_vkey(vkey)
    assert recheck(failed, log).result is False
    with pytest.raises(RecheckFailed, match=why):
        recheck(_forge(failed, how), log)


async def test_another_logs_key_refuses(world: IncentiveWorld) -> None:
    passed, _failed, _vkey = await _disclosures(world)
    from ledger.note import Signer

    other = Signer.generate("other.example/log")
    with pytest.raises(RecheckFailed, match="the log entry"):
        recheck(passed, other.verifier)
