"""Reading vitals (the patient, or a provider with consent), and erasure by crypto-shredding
that keeps the ledger verifiable."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gateway.appkeys import LOG
from gateway.config import Config
from ledger.export import export_log
from ledger.note import Verifier
from ledger.verify import DirSource, verify_log
from tests.gateway.idclient import call
from tests.gateway.vitals.world import World, batch, bp, hr, iso


async def _seed(world: World, n: int = 3) -> float:
    now = time.time()
    for i in range(n):
        resp = await world.send(
            batch([hr(60 + i, now - 300 + i * 60), bp(120, 80, now - 299 + i * 60)])
        )
        assert resp.status == 201, await resp.text()
    return now


async def test_the_patient_reads_their_own_vitals(world: World) -> None:
    now = await _seed(world)
    resp = await world.read(world.pat, world.pat_t)
    body = await resp.json()
    assert resp.status == 200, body
    assert len(body["readings"]) == 6 and body["next"] is None
    hrs = [r for r in body["readings"] if r["code"] == "8867-4"]
    assert [r["value"] for r in hrs] == [60, 61, 62]
    assert all(r["device"] == world.dev.sub and isinstance(r["ledger_index"], int) for r in hrs)
    only = await (await world.read(world.pat, world.pat_t, code="85354-9")).json()
    assert {r["code"] for r in only["readings"]} == {"85354-9"}
    window = await (
        await world.read(
            world.pat, world.pat_t, code="8867-4", since=iso(now - 250), until=iso(now - 200)
        )
    ).json()
    assert [r["value"] for r in window["readings"]] == [61]


async def test_pages_follow_the_cursor_without_gaps_or_repeats(world: World) -> None:
    await _seed(world, 5)
    seen, after = [], None
    while True:
        q = {"limit": "3", **({"after": after} if after else {})}
        body = await (await world.read(world.pat, world.pat_t, **q)).json()
        assert len(body["readings"]) <= 3
        seen += [(r["batch_id"], r["code"]) for r in body["readings"]]
        after = body["next"]
        if after is None:
            break
    assert len(seen) == 10 and len(set(seen)) == 10


async def test_a_provider_needs_vitals_read_consent_and_each_use_is_recorded(world: World) -> None:
    await _seed(world, 1)
    resp = await world.read(world.prov, world.prov_t)
    assert resp.status == 403
    refused = await world.events("consent.refused")
    assert refused[-1]["actor"] == world.prov.sub and refused[-1]["data"]["scope"] == "vitals.read"
    await world.grant(["vitals.stream"])  # the wrong scope does not help
    assert (await world.read(world.prov, world.prov_t)).status == 403
    grant = await world.grant(["vitals.read"])
    resp = await world.read(world.prov, world.prov_t)
    assert resp.status == 200
    used = await world.events("consent.used")
    assert used[-1]["data"]["consent"] == grant["id"] and used[-1]["subject"] == world.pat.sub


async def test_another_patient_cannot_read(world: World) -> None:
    await _seed(world, 1)
    assert (await world.read(world.other, world.other_t)).status == 403
    # A device has no vitals.read scope, even for its own patient.
    assert (await world.read(world.dev, world.dev_t)).status == 403


async def test_malformed_queries(world: World) -> None:
    for q in (
        {"code": "1234-5"},
        {"since": "yesterday"},
        {"limit": "0"},
        {"limit": "100000"},
        {"limit": "x"},
        {"after": "a.b"},
        {"format": "xml"},
    ):
        resp = await world.read(world.pat, world.pat_t, **q)
        assert resp.status == 400, q
    bad = await call(
        world.client, "GET", "/v1/patients/not-a-patient/vitals", world.pat, world.pat_t
    )
    assert bad.status == 404


async def _erase(world: World, reason: str = "patient_request") -> object:
    return await call(
        world.client,
        "POST",
        f"/v1/patients/{world.pat.sub}/erase",
        world.adm,
        world.adm_t,
        json={"reason": reason, "reference": "REQ-2026-0042"},
    )


async def test_erasure_shreds_the_data_and_keeps_the_log_valid(
    world: World, config: Config
) -> None:
    await _seed(world, 2)
    await world.send(batch([hr(80, time.time())]), world.other_dev)  # not erased
    resp = await _erase(world)
    body = await resp.json()
    assert resp.status == 200, body
    assert body["erased_batches"] == 2
    # Unreadable afterwards, for everyone; the other patient is untouched.
    gone = await world.read(world.pat, world.pat_t)
    assert gone.status == 410
    assert (await gone.json())["type"].endswith("/erased")
    assert (await world.read(world.other, world.other_t, patient=world.other)).status == 200
    # The device cannot post for an erased patient.
    assert (await world.send(batch([hr(70, time.time())]))).status == 410
    # The erasure is a ledger event, with no free text.
    (ev,) = await world.events("patient.erased")
    assert ev["_index"] == body["receipt"]["index"]
    assert ev["actor"] == world.adm.sub and ev["subject"] == world.pat.sub
    assert ev["data"] == {
        "scope": "vitals",
        "reason": "patient_request",
        "reference": "REQ-2026-0042",
        "batches": 2,
    }
    # Every batch event is still there and the whole log verifies end to end.
    assert len(await world.events("vitals.batch")) == 3
    vkey = (await (await world.client.get("/ledger/vkey")).text()).strip()
    export = Path(config.data_dir) / "export"
    ledger = world.client.server.app[LOG]
    await asyncio.to_thread(export_log, ledger.store, export)
    cp = await asyncio.to_thread(verify_log, DirSource(export), Verifier.from_vkey(vkey))
    assert cp.size >= body["receipt"]["index"] + 1


async def test_no_key_material_or_reading_survives_in_the_files(
    world: World, config: Config
) -> None:
    import sqlalchemy as sa

    from gateway.db import Database, reading
    from gateway.vitals.tables import batches, erased, patient_keys

    now = await _seed(world, 1)
    db = Database.from_config(config)
    try:
        engine = db.engine("vitals")
        pat = world.pat.sub
        with reading(engine) as c:
            wrapped = c.execute(
                sa.select(patient_keys.c.wrapped).where(patient_keys.c.patient == pat)
            ).scalar_one()
            ct = c.execute(
                sa.select(batches.c.ciphertext).where(batches.c.patient == pat)
            ).scalar_one()
            stored = b"".join(
                v if isinstance(v, bytes) else str(v).encode()
                for row in c.execute(sa.select(batches)).all()
                for v in row
            )
        # Nothing about a reading is in plain text (the ledger event kept for recovery names
        # the codes, as the ledger does; never a unit, value or time).
        assert b"mm[Hg]" not in stored and b"/min" not in stored
        assert iso(now - 300)[:19].encode() not in stored
        files = list(config.data_dir.glob("vitals.db*")) if db.embedded else []
        assert not db.embedded or any(wrapped in p.read_bytes() for p in files)
        for p in files:
            data = p.read_bytes()
            assert b"mm[Hg]" not in data and b"/min" not in data
            assert iso(now - 300)[:19].encode() not in data
        assert (await _erase(world)).status == 200
        with reading(engine) as c:  # the live rows, on either engine
            assert (
                c.execute(sa.select(patient_keys).where(patient_keys.c.patient == pat)).all() == []
            )
            left = c.execute(
                sa.select(batches.c.nonce, batches.c.ciphertext).where(batches.c.patient == pat)
            ).all()
            assert left == [(None, None)]
            assert c.execute(sa.select(erased.c.patient)).scalars().all() == [pat]
        # SQLite: secure_delete and the truncated WAL leave no copy in the files. (PostgreSQL
        # keeps old row versions until VACUUM, in its WAL and backups: only wrapped, useless
        # without the master key, which never enters the database.)
        for p in config.data_dir.glob("vitals.db*") if db.embedded else []:
            data = p.read_bytes()
            assert wrapped not in data and ct[:64] not in data, p.name
    finally:
        db.close()


async def test_erasure_is_admin_only_and_validated(world: World) -> None:
    await _seed(world, 1)
    path = f"/v1/patients/{world.pat.sub}/erase"
    for who, tok in (
        (world.pat, world.pat_t),
        (world.prov, world.prov_t),
        (world.dev, world.dev_t),
    ):
        resp = await call(world.client, "POST", path, who, tok, json={"reason": "patient_request"})
        assert resp.status == 403
    for body in (
        {},
        {"reason": "because"},
        {"reason": "patient_request", "note": "x"},
        {"reason": "patient_request", "reference": "has spaces"},
    ):
        resp = await call(world.client, "POST", path, world.adm, world.adm_t, json=body)
        assert resp.status == 400, body
    unknown = f"/v1/patients/pat:{'0' * 32}/erase"
    resp = await call(
        world.client, "POST", unknown, world.adm, world.adm_t, json={"reason": "legal_order"}
    )
    assert resp.status == 404
    assert (await _erase(world)).status == 200
    assert (await _erase(world)).status == 409
    assert (await world.read(world.pat, world.pat_t)).status == 410


async def test_a_reader_checks_the_device_signature_with_the_device_key_alone(world: World) -> None:
    import json

    import jwt

    from gateway.auth.jwk import HolderKey

    await _seed(world, 2)
    body = await (await world.read(world.pat, world.pat_t)).json()
    assert len(body["signed"]) == 2
    device_key = HolderKey.from_jwk(world.dev.jwk)  # what anyone can get for the device
    for name, jws in body["signed"].items():
        payload = json.loads(jwt.api_jws.PyJWS().decode(jws, device_key.key, algorithms=["EdDSA"]))
        assert name == f"{world.dev.sub}/{payload['batch_id']}"
        mine = [r for r in body["readings"] if r["batch_id"] == payload["batch_id"]]
        assert [r["code"] for r in mine] == [r["code"] for r in payload["readings"]]
    # The ledger's sig_hash matches the signature the reader holds.
    import base64
    import hashlib

    events = {e["data"]["batch_id"]: e for e in await world.events("vitals.batch")}
    for name, jws in body["signed"].items():
        sig = base64.urlsafe_b64decode(jws.rsplit(".", 1)[1] + "==")
        assert events[name.split("/", 1)[1]]["data"]["sig_hash"] == hashlib.sha256(sig).hexdigest()


async def test_out_of_range_times_and_cursors_are_a_400_naming_the_parameter(
    world: World,
) -> None:
    await _seed(world, 1)
    for q, name in (
        ({"since": "0001-01-01T00:00:00+14:00"}, "since"),
        ({"until": "9999-12-31T23:59:59-14:00"}, "until"),
        ({"since": "YESTERDAY"}, "since"),
        ({"after": "99999999999999999999.0"}, "after"),
        ({"after": "1.99999999999999999999"}, "after"),
        ({"after": " 1.0"}, "after"),
        ({"limit": "1_0"}, "limit"),
    ):
        resp = await world.read(world.pat, world.pat_t, **q)
        body = await resp.json()
        assert resp.status == 400, (q, body)
        assert resp.content_type == "application/problem+json"
        assert name in body["detail"] and "isoformat" not in body["detail"], body
