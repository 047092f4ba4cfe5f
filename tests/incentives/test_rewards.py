"""Reward credentials (SD-JWT VC) checked by an independent verifier: the ``sd-jwt``
reference implementation's holder and verifier, PyJWT and zlib for the status list; none of
the gateway's own verification code."""

from __future__ import annotations

import base64
import json
import time
import zlib
from pathlib import Path
from typing import Any

import jwt
import pytest
from jwcrypto.jwk import JWK
from jwcrypto.jws import InvalidJWSSignature
from sd_jwt.holder import SDJWTHolder
from sd_jwt.verifier import SDJWTVerifier

from gateway.cli import main
from tests.gateway.idclient import Holder, call, get_token, invite_and_enroll
from tests.gateway.vitals.world import batch, hr, sign
from tests.incentives.conftest import DAY, IncentiveWorld, day_start

RULE = 'count("8867-4") >= 2'
AUD = "https://insurer.example"


class Patient:
    """A patient whose key is ES256 (the reference verifier checks key-binding JWTs with
    ES256 only), with a monitor of their own."""

    async def setup(self, w: IncentiveWorld) -> Patient:
        c = w.client
        self.h = await invite_and_enroll(c, w.adm, w.adm_t, "patient", holder=Holder("ES256"))
        self.t = await get_token(c, self.h)
        self.dev = await w.device(self.h)
        self.dev_t = await get_token(c, self.dev)
        return self

    async def readings(self, w: IncentiveWorld, day: int, n: int) -> None:
        base = day_start(4) + day * DAY + 9 * 3600
        payload = batch([hr(70 + i, base + i * 60) for i in range(n)])
        resp = await w.post(sign(self.dev, payload), self.dev, self.dev_t)
        assert resp.status in (200, 201), await resp.text()


async def _earn(w: IncentiveWorld) -> tuple[Patient, str, dict[str, Any]]:
    pat = await Patient().setup(w)
    pid = await w.program(RULE)
    assert (await w.enroll(pid, pat.h, pat.t)).status == 201
    await pat.readings(w, 0, 3)  # passes
    await pat.readings(w, 1, 1)  # fails
    ok = await (await w.evaluate(pid, 0, pat.h, pat.t)).json()
    failed = await (await w.evaluate(pid, 1, pat.h, pat.t)).json()
    assert ok["passed"] and ok["reward"] and "reward" not in failed
    resp = await call(w.client, "GET", "/v1/rewards", pat.h, pat.t)
    [reward] = (await resp.json())["rewards"]
    assert reward["id"] == ok["reward"] and reward["period"] == 0
    return pat, pid, reward


async def _issuer_keys(w: IncentiveWorld) -> dict[str, Any]:
    jwks = await (await w.client.get("/.well-known/jwks.json")).json()
    return {k["kid"]: k for k in jwks["keys"]}


def _present(credential: str, pat: Patient, disclose: dict[str, Any], nonce: str) -> str:
    holder = SDJWTHolder(credential)
    key = JWK.from_pyca(pat.h.key)
    holder.create_presentation(disclose, nonce, AUD, key, "ES256")
    out: str = holder.sd_jwt_presentation
    return out


def _verify(presentation: str, keys: dict[str, Any], nonce: str) -> dict[str, Any]:
    def issuer_key(iss: str, header: dict[str, Any]) -> JWK:
        return JWK(**keys[header["kid"]])

    v = SDJWTVerifier(presentation, issuer_key, expected_aud=AUD, expected_nonce=nonce)
    payload: dict[str, Any] = v.get_verified_payload()
    return payload


async def _status_bit(w: IncentiveWorld, uri: str, idx: int, keys: dict[str, Any]) -> int:
    path = uri.split("://", 1)[-1]
    path = path[path.index("/") :]
    resp = await w.client.get(path)
    assert resp.content_type == "application/statuslist+jwt"
    token = await resp.text()
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWK(keys[kid]).key
    claims = jwt.decode(token, key, algorithms=["EdDSA", "ES256"], options={"verify_exp": True})
    raw = zlib.decompress(base64.urlsafe_b64decode(claims["status_list"]["lst"] + "=="))
    return (raw[idx // 8] >> (idx % 8)) & 1


async def test_a_reward_disclosing_only_the_program_verifies_with_key_binding(
    world: IncentiveWorld,
) -> None:
    pat, pid, reward = await _earn(world)
    keys = await _issuer_keys(world)
    presentation = _present(reward["credential"], pat, {"program": True}, "n-1")
    payload = _verify(presentation, keys, "n-1")
    assert payload["program"] == pid and payload["vct"] == "urn:telegate:incentive-reward:1"
    assert not {"period", "result", "points", "evaluation"} & set(payload)
    assert payload["cnf"]["jwk"]["x"] == pat.h.jwk["x"]
    status = payload["status"]["status_list"]
    assert await _status_bit(world, status["uri"], status["idx"], keys) == 0
    # Everything disclosed: the evaluation's ledger entry says the same.
    full = _verify(
        _present(
            reward["credential"],
            pat,
            {k: True for k in ("program", "period", "result", "points", "evaluation")},
            "n-2",
        ),
        keys,
        "n-2",
    )
    entry = await (await world.client.get(f"/ledger/entries/{full['evaluation']}")).json()
    data = entry["event"]["data"]
    assert (data["program"], data["period"], data["result"], data["points"]) == (
        pid,
        full["period"],
        full["result"],
        full["points"],
    )
    [issued] = await world.events("incentive.reward_issued")
    assert issued["data"]["reward"] == reward["id"] and issued["subject"] == pat.h.sub


def _tamper(presentation: str, value: Any, claim: str = "program") -> str:
    """The SD-JWT with the disclosure of ``claim`` changed to say ``value``."""
    parts = presentation.split("~")
    for i, part in enumerate(parts[1:-1], 1):
        salt, name, _ = json.loads(base64.urlsafe_b64decode(part + "=="))
        if name == claim:
            forged = json.dumps([salt, name, value]).encode()
            parts[i] = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
            return "~".join(parts)
    raise AssertionError(f"no disclosure of {claim}")


async def test_a_tampered_disclosure_or_another_key_is_refused(world: IncentiveWorld) -> None:
    pat, _pid, reward = await _earn(world)
    keys = await _issuer_keys(world)
    presentation = _present(reward["credential"], pat, {"program": True}, "n-3")
    with pytest.raises(ValueError, match="digest"):
        _verify(_tamper(presentation, "f" * 64), keys, "n-3")
    # The holder re-binding a forged disclosure: its digest is in no signed _sd, so the
    # claim is not there (sd-jwt 0.10 drops an unreferenced disclosure without raising).
    forged = _tamper(reward["credential"], "f" * 64)
    rebound = _present(forged, pat, {"program": True}, "n-4")
    assert "program" not in _verify(rebound, keys, "n-4")
    # Someone else's key cannot bind it.
    thief = Patient()
    thief.h = Holder("ES256")
    stolen = _present(reward["credential"], thief, {"program": True}, "n-5")
    with pytest.raises(InvalidJWSSignature):
        _verify(stolen, keys, "n-5")
    with pytest.raises(ValueError, match="nonce"):
        _verify(presentation, keys, "another nonce")


async def test_a_revoked_reward_is_refused_by_its_status(world: IncentiveWorld) -> None:
    pat, _pid, reward = await _earn(world)
    keys = await _issuer_keys(world)
    payload = _verify(_present(reward["credential"], pat, {"program": True}, "n"), keys, "n")
    status = payload["status"]["status_list"]
    # Only an admin revokes.
    for who, token in ((pat.h, pat.t), (world.prov, world.prov_t)):
        resp = await call(world.client, "POST", f"/v1/rewards/{reward['id']}/revoke", who, token)
        assert resp.status == 403
    resp = await call(
        world.client, "POST", f"/v1/rewards/{reward['id']}/revoke", world.adm, world.adm_t
    )
    assert resp.status == 200
    assert await _status_bit(world, status["uri"], status["idx"], keys) == 1
    [ev] = await world.events("incentive.reward_revoked")
    assert ev["data"] == {"reward": reward["id"], "status_idx": status["idx"]}
    again = await call(
        world.client, "POST", f"/v1/rewards/{reward['id']}/revoke", world.adm, world.adm_t
    )
    assert again.status == 404
    bad = await call(world.client, "POST", "/v1/rewards/%2E%2E/revoke", world.adm, world.adm_t)
    assert bad.status == 404


async def test_rewards_are_the_patients_own(world: IncentiveWorld) -> None:
    _pat, _pid, _reward = await _earn(world)
    mine = await call(world.client, "GET", "/v1/rewards", world.pat, world.pat_t)
    assert (await mine.json())["rewards"] == []
    for who, token in ((world.prov, world.prov_t), (world.adm, world.adm_t)):
        assert (await call(world.client, "GET", "/v1/rewards", who, token)).status == 403
    assert (await world.client.get("/v1/rewards")).status == 401


async def test_erasure_keeps_the_reward_and_the_log_but_not_the_aggregates(
    world: IncentiveWorld,
) -> None:
    pat, pid, reward = await _earn(world)
    keys = await _issuer_keys(world)
    resp = await call(
        world.client,
        "POST",
        f"/v1/patients/{pat.h.sub}/erase",
        world.adm,
        world.adm_t,
        json={"reason": "patient_request", "reference": "REQ-21"},
    )
    assert resp.status == 200, await resp.text()
    gone = await call(world.client, "GET", f"/v1/programs/{pid}/evaluations/0", pat.h, pat.t)
    assert gone.status == 410
    progress = await call(world.client, "GET", f"/v1/programs/{pid}/progress", pat.h, pat.t)
    assert progress.status == 410
    # The credential still verifies, its status is still good, and the log still holds
    # the evaluation's commitment and result.
    payload = _verify(_present(reward["credential"], pat, {"evaluation": True}, "e"), keys, "e")
    status = payload["status"]["status_list"]
    assert await _status_bit(world, status["uri"], status["idx"], keys) == 0
    entry = await (await world.client.get(f"/ledger/entries/{payload['evaluation']}")).json()
    assert entry["event"]["data"]["result"] is True
    # A period not yet evaluated cannot be any more.
    assert (await world.evaluate(pid, 2, pat.h, pat.t)).status == 410


async def test_the_cli_ties_a_credential_to_its_rechecked_evaluation(
    world: IncentiveWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pat, pid, reward = await _earn(world)
    resp = await call(world.client, "GET", f"/v1/programs/{pid}/evaluations/0", pat.h, pat.t)
    (tmp_path / "d.json").write_text(await resp.text())
    (tmp_path / "jwks.json").write_text(
        await (await world.client.get("/.well-known/jwks.json")).text()
    )
    vkey = await (await world.client.get("/ledger/vkey")).text()

    def run(disclose: dict[str, Any], mangle: Any = None) -> int:
        holder = SDJWTHolder(reward["credential"])
        holder.create_presentation(disclose)
        sd_jwt = holder.sd_jwt_presentation
        (tmp_path / "cred").write_text(mangle(sd_jwt) if mangle else sd_jwt)
        argv = ["incentives", "verify", str(tmp_path / "d.json"), "--vkey", vkey]
        argv += ["--credential", str(tmp_path / "cred"), "--jwks", str(tmp_path / "jwks.json")]
        return main(argv)

    assert run({"program": True, "period": True, "evaluation": True}) == 0
    assert "names this evaluation" in capsys.readouterr().out
    assert run({"program": True}) == 1
    assert "must disclose program and period" in capsys.readouterr().err
    assert run({"program": True, "period": True}, lambda s: _tamper(s, 1, "period")) == 1
    assert "did not sign" in capsys.readouterr().err
    # Another period's evaluation: the credential does not name it.
    other = await (await world.evaluate(pid, 1, pat.h, pat.t)).json()
    assert other["passed"] is False
    resp = await call(world.client, "GET", f"/v1/programs/{pid}/evaluations/1", pat.h, pat.t)
    (tmp_path / "d.json").write_text(await resp.text())
    assert run({"program": True, "period": True}) == 1
    assert "period is not the evaluation's" in capsys.readouterr().err


async def test_a_reservation_left_by_a_stopped_issuer_is_taken_over(world: IncentiveWorld) -> None:
    from gateway.incentives.http import EVALUATOR, REWARDS

    pat = await Patient().setup(world)
    pid = await world.program(RULE)
    assert (await world.enroll(pid, pat.h, pat.t)).status == 201
    await pat.readings(world, 0, 3)
    ev = world.client.app[EVALUATOR]
    sp = await ev.program(pid)
    e = await ev.evaluate(pat.h.sub, pat.h.sub, sp, 0)
    # An issuer reserved the row long ago and stopped before appending.
    ev.store.reserve_reward("stale", pat.h.sub, pid, 0, int(time.time()) - 3600)
    reward = await world.client.app[REWARDS].issue(e, sp.program, "https://gw.example")
    assert reward is not None and reward.id != "stale"
    # Issued once: the completed reward is not taken over.
    assert await world.client.app[REWARDS].issue(e, sp.program, "https://gw.example") is None
    listed = await call(world.client, "GET", "/v1/rewards", pat.h, pat.t)
    assert [r["id"] for r in (await listed.json())["rewards"]] == [reward.id]
