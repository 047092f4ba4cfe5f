"""The patient's access report after a scripted scenario: enroll, consent, call, vitals,
break-the-glass, erasure. Every disclosure is there with who, role, purpose and basis; the
patient's own actions and the device's writes are not; every row's proof verifies."""

from __future__ import annotations

import time
from typing import Any

from ledger.checkpoint import Checkpoint
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.note import Verifier, open_note
from tests.gateway.idclient import call, get_token, invite_and_enroll
from tests.gateway.vitals.world import NPI, World, batch, hr


def _verify(report: dict[str, Any], vkey: str) -> None:
    """Check every row against the report's checkpoint with the vkey alone."""
    import base64
    import json

    import rfc8785

    note, _ = open_note(report["checkpoint"].encode(), [Verifier.from_vkey(vkey)])
    cp = Checkpoint.parse(note.text)
    assert cp.size == report["size"]
    for a in report["accesses"]:
        raw = base64.b64decode(a["leaf"])  # the exact leaf bytes, hashed as they are
        assert raw == rfc8785.dumps(a["event"])
        leaf = leaf_hash(raw)
        assert base64.b64decode(a["leaf_hash"]) == leaf
        proof = [base64.b64decode(h) for h in a["inclusion_proof"]]
        verify_inclusion(a["index"], cp.size, leaf, proof, cp.root)
        assert json.loads(rfc8785.dumps(a["event"])) == a["event"]


async def test_access_report_after_a_scripted_scenario(world: World) -> None:
    c = world.client
    # A second provider, with no consent, who will break the glass.
    er = await invite_and_enroll(c, world.adm, world.adm_t, "provider", npi=NPI)
    er_t = await get_token(c, er)
    consent = await world.grant(["call", "vitals.read", "vitals.stream"])
    sid, prov_ws, pat_ws = await world.admitted_call()
    assert (await world.send(batch([hr(77, time.time() - 3)], "scenario-1"))).status == 201
    assert (await prov_ws.receive_json(timeout=5))["type"] == "vitals"
    assert (await world.read(world.prov, world.prov_t)).status == 200
    assert (await world.read(er, er_t)).status == 403  # refused, and recorded
    r = await call(
        c,
        "POST",
        "/v1/emergency-access",
        er,
        er_t,
        json={"patient": world.pat.sub, "reason": "unconscious_patient"},
    )
    assert r.status == 201, await r.text()
    assert (await world.read(er, er_t)).status == 200
    await call(c, "POST", f"/v1/sessions/{sid}/end", world.prov, world.prov_t)
    erase = {"reason": "patient_request"}
    r = await call(
        c, "POST", f"/v1/patients/{world.pat.sub}/erase", world.adm, world.adm_t, json=erase
    )
    assert r.status == 200
    await prov_ws.close()
    await pat_ws.close()

    r = await call(c, "GET", f"/v1/patients/{world.pat.sub}/access-report", world.pat, world.pat_t)
    assert r.status == 200, await r.text()
    report = await r.json()
    rows = [
        (
            a["who"],
            a["role"],
            a["action"],
            a["event"]["data"].get("scope"),
            a["purpose"],
            a["consent"],
            a["break_the_glass"],
        )
        for a in report["accesses"]
        if a["action"] not in ("identity.invite_created",)
    ]
    p, e, adm = world.prov.sub, er.sub, world.adm.sub
    assert rows == [
        (p, "provider", "consent.used", "call", "treatment", consent["id"], False),
        (p, "provider", "session.scheduled", None, None, None, False),
        (p, "provider", "session.admitted", None, None, None, False),
        (p, "provider", "consent.used", "vitals.stream", "treatment", consent["id"], False),
        (p, "provider", "consent.used", "vitals.read", "treatment", consent["id"], False),
        (e, "provider", "consent.refused", "vitals.read", "treatment", None, False),
        (e, "provider", "consent.emergency_access", None, None, None, True),
        (e, "provider", "consent.used", "vitals.read", "treatment", None, True),
        (p, "provider", "session.ended", None, None, None, False),
        (adm, "admin", "patient.erased", "vitals", None, None, False),
    ]
    # Not disclosures: the patient's own acts, the device writing readings, tokens issued.
    actions = {a["action"] for a in report["accesses"]}
    assert "vitals.batch" not in actions and "attestation.issued" not in actions
    assert {a["role"] for a in report["accesses"]} == {"provider", "admin"}
    assert all(a["who"] != world.pat.sub for a in report["accesses"])
    vkey = (await (await c.get("/ledger/vkey")).text()).strip()
    _verify(report, vkey)
