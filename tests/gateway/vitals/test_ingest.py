"""POST /v1/vitals: signed batches in, receipts out; idempotency; who may post for whom."""

from __future__ import annotations

import time
from typing import Any

from gateway.appkeys import AUTHORITY
from tests.gateway.idclient import call, get_token, token_response
from tests.gateway.vitals.world import World, batch, bp, hr, iso, sign


async def test_a_signed_batch_is_accepted_with_a_receipt_and_one_ledger_event(world: World) -> None:
    now = time.time()
    resp = await world.send(batch([hr(72, now - 60), bp(121, 79, now - 30)], "b-1"))
    body = await resp.json()
    assert resp.status == 201, body
    assert body["batch_id"] == "b-1" and body["count"] == 2
    events = await world.events("vitals.batch")
    assert len(events) == 1
    ev = events[0]
    assert ev["_index"] == body["receipt"]["index"]
    assert ev["actor"] == world.dev.sub and ev["subject"] == world.pat.sub
    data = ev["data"]
    assert data["count"] == 2 and data["codes"] == ["85354-9", "8867-4"]
    assert set(data) == {
        "device",
        "batch_id",
        "form",
        "batch_hash",
        "sig_hash",
        "count",
        "codes",
        "commitment",
    }
    # Identifiers, hashes, a count, codes and a commitment: no value, unit or reading time.
    assert all(len(data[k]) == 64 for k in ("batch_hash", "sig_hash", "commitment"))
    raw = str(ev)
    assert "mm[Hg]" not in raw and "/min" not in raw and iso(now - 60)[:16] not in raw


async def test_reposting_the_same_batch_returns_the_first_receipt(world: World) -> None:
    b = batch([hr(70, time.time() - 5)], "same")
    first = await world.send(b)
    again = await world.send(b)  # a new signature over the same payload
    assert first.status == 201 and again.status == 200
    r1, r2 = (await first.json())["receipt"], (await again.json())["receipt"]
    assert r1["index"] == r2["index"] and r1["leaf_hash"] == r2["leaf_hash"]
    assert len(await world.events("vitals.batch")) == 1


async def test_the_same_batch_id_with_other_content_is_a_conflict(world: World) -> None:
    t = time.time() - 5
    assert (await world.send(batch([hr(70, t)], "dup"))).status == 201
    resp = await world.send(batch([hr(71, t)], "dup"))
    assert resp.status == 409
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert len(await world.events("vitals.batch")) == 1


async def test_concurrent_reposts_of_one_batch_make_one_event(world: World) -> None:
    import asyncio

    b = batch([hr(66, time.time() - 5)], "race")
    jws = [sign(world.dev, b) for _ in range(5)]
    dev_t = world.dev_t
    resps = await asyncio.gather(*(world.post(j, world.dev, dev_t) for j in jws))
    statuses = sorted(r.status for r in resps)
    assert statuses == [200, 200, 200, 200, 201]
    indexes = {(await r.json())["receipt"]["index"] for r in resps}
    assert len(indexes) == 1
    assert len(await world.events("vitals.batch")) == 1


async def test_a_device_posts_only_for_its_own_patient(world: World) -> None:
    resp = await world.send(batch([hr(70, time.time())], patient=world.other.sub))
    assert resp.status == 403
    # Another device's batch id space is its own: the same id from the other device is new.
    ok = await world.send(batch([hr(70, time.time())], "shared"), world.other_dev)
    assert ok.status == 201
    ev = (await world.events("vitals.batch"))[-1]
    assert ev["subject"] == world.other.sub and ev["actor"] == world.other_dev.sub


async def test_a_batch_naming_another_device_is_refused(world: World) -> None:
    resp = await world.send(batch([hr(70, time.time())], device=world.other_dev.sub))
    assert resp.status == 403


async def test_a_batch_signed_by_another_key_is_refused(world: World) -> None:
    forged = sign(world.other_dev, batch([hr(70, time.time())]))
    resp = await world.post(forged)  # sent with world.dev's token and DPoP key
    assert resp.status == 400
    assert (await resp.json())["type"].endswith("/invalid-signature")


async def test_a_tampered_payload_fails_the_signature(world: World) -> None:
    import base64
    import json

    head, payload, sig = sign(world.dev, batch([hr(70, time.time())])).split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["readings"][0]["value"] = 170
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    resp = await world.post(f"{head}.{forged}.{sig}")
    assert resp.status == 400
    assert (await resp.json())["type"].endswith("/invalid-signature")


async def test_algorithm_confusion_and_unsigned_batches_are_refused(world: World) -> None:
    import base64
    import json

    def b64(d: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    payload = b64(batch([hr(70, time.time())]))
    unsigned = f"{b64({'alg': 'none', 'typ': 'vitals+json'})}.{payload}."
    assert (await world.post(unsigned)).status == 400
    hs = f"{b64({'alg': 'HS256', 'typ': 'vitals+json'})}.{payload}.AAAA"
    assert (await world.post(hs)).status == 400
    wrong_typ = sign(world.dev, batch([hr(70, time.time())]), typ="JWT")
    assert (await world.post(wrong_typ)).status == 400


async def test_only_devices_post_vitals(world: World) -> None:
    jws = sign(world.dev, batch([hr(70, time.time())]))
    for who, tok in (
        (world.pat, world.pat_t),
        (world.prov, world.prov_t),
        (world.adm, world.adm_t),
    ):
        headers = {"Content-Type": "application/jose"}
        resp = await call(world.client, "POST", "/v1/vitals", who, tok, data=jws, headers=headers)
        assert resp.status == 403


async def test_a_revoked_device_is_refused(world: World) -> None:
    body = {"sub": world.dev.sub, "reason": "device_lost"}
    resp = await call(world.client, "POST", "/v1/revocations", world.adm, world.adm_t, json=body)
    assert resp.status == 200, await resp.text()
    assert (await world.send(batch([hr(70, time.time())]))).status == 401


async def test_a_device_token_is_dpop_bound(world: World) -> None:
    jws = sign(world.dev, batch([hr(70, time.time())]))
    headers = {"Authorization": f"DPoP {world.dev_t}", "Content-Type": "application/jose"}
    resp = await world.client.post("/v1/vitals", data=jws, headers=headers)  # no proof
    assert resp.status == 401
    bearer = {"Authorization": f"Bearer {world.dev_t}", "Content-Type": "application/jose"}
    assert (await world.client.post("/v1/vitals", data=jws, headers=bearer)).status == 401


async def test_wrong_media_type_and_oversized_bodies(world: World, config: object) -> None:
    jws = sign(world.dev, batch([hr(70, time.time())]))
    resp = await world.post(jws, headers={"Content-Type": "application/json"})
    assert resp.status == 415
    import io

    resp = await world.post(io.BytesIO(b"a" * (2 * 1024 * 1024)))
    assert resp.status == 413
    assert (await world.post("not a jws")).status == 400
    assert (await world.post("é.é.é".encode())).status == 400


async def test_a_device_enrolled_with_es256_signs_with_es256(world: World) -> None:
    dev = await world.device(world.pat, alg="ES256")
    tok = await get_token(world.client, dev)
    resp = await world.post(sign(dev, batch([hr(70, time.time())])), dev, tok)
    assert resp.status == 201, await resp.text()


async def test_non_base64url_segments_and_short_es256_signatures_are_refused(world: World) -> None:
    head, payload, sig = sign(world.dev, batch([hr(70, time.time())])).split(".")
    assert (await world.post(f"{head}.{payload}+.{sig}")).status == 400
    assert (await world.post(f"{head}.{payload}.{sig}=")).status == 400
    assert (await world.post(f"{head}.{payload}.{sig[:-8]}")).status == 400
    dev = await world.device(world.pat, alg="ES256")
    tok = await get_token(world.client, dev)
    head, payload, sig = sign(dev, batch([hr(70, time.time())])).split(".")
    resp = await world.post(f"{head}.{payload}.{sig[:40]}", dev, tok)
    assert resp.status == 400
    assert (await resp.json())["type"].endswith("/invalid-signature")


async def test_hostile_json_in_a_signed_batch_is_a_400_not_a_500(world: World) -> None:
    # Python's json recurses once a level: about a thousand levels end in RecursionError.
    deep = b'{"batch_id":"deep","readings":' + b"[" * 2500 + b"]" * 2500 + b"}"
    for payload in (
        deep,
        b'{"batch_id":"nan","readings":[{"code":"8867-4","unit":"/min","value":NaN}]}',
        b'{"batch_id":"inf","readings":[{"code":"8867-4","unit":"/min","value":1e999}]}',
    ):
        resp = await world.send(payload)
        assert resp.status == 400, await resp.text()
        assert resp.content_type == "application/problem+json"


async def test_an_integer_of_hundreds_of_digits_is_refused_not_a_500(world: World) -> None:
    reading = {**hr(70, time.time() - 5), "value": 10**400}
    resp = await world.send(batch([reading]))
    assert resp.status in (400, 422), await resp.text()
    assert resp.content_type == "application/problem+json"


async def test_reading_times_beyond_utc_are_refused_not_a_500(world: World) -> None:
    for stamp in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        resp = await world.send(batch([{**hr(70, time.time()), "time": stamp}]))
        body = await resp.json()
        assert resp.status == 422, body
        assert "RFC 3339" in body["errors"][0]["detail"]


async def introspect(world: World, token: str) -> dict[str, Any]:
    resp = await call(
        world.client, "POST", "/oauth/introspect", world.adm, world.adm_t, data={"token": token}
    )
    assert resp.status == 200, await resp.text()
    out: dict[str, Any] = await resp.json()
    return out


async def test_a_device_of_a_revoked_patient_is_refused(world: World) -> None:
    """A device acts only for its patient: once they have left, its attestation is refused
    like a revoked one (401, at every endpoint, by the one rule of ``verify_token``), and
    introspection, which answers by the same rule, calls it inactive. Nothing more goes
    into the patient's record; other devices are unaffected."""
    assert (await world.send(batch([hr(70, time.time())]))).status == 201
    assert (await introspect(world, world.dev_t))["active"] is True
    body = {"sub": world.pat.sub, "reason": "left_the_practice"}
    resp = await call(world.client, "POST", "/v1/revocations", world.adm, world.adm_t, json=body)
    assert resp.status == 200, await resp.text()
    stored = len(await world.events("vitals.batch"))
    resp = await world.send(batch([hr(71, time.time())]))
    text = await resp.text()
    assert resp.status == 401, text
    assert resp.content_type == "application/problem+json"
    assert (await resp.json())["type"] == "https://telegate.dev/problems/unauthorized"
    assert len(await world.events("vitals.batch")) == stored
    assert (await introspect(world, world.dev_t)) == {"active": False}
    assert (await call(world.client, "GET", "/v1/me", world.dev, world.dev_t)).status == 401
    # The same after a restart (the set is rebuilt from the store).
    assert world.dev.sub in world.client.app[AUTHORITY].store.revoked_subjects()
    # The other patient's device is not affected.
    resp = await world.send(batch([hr(72, time.time())]), world.other_dev)
    assert resp.status == 201, await resp.text()


async def test_a_device_of_a_revoked_patient_gets_no_token(world: World) -> None:
    """A device acts only for its patient: once the patient is revoked it is issued
    nothing (invalid_client, audited as the token endpoint's other refusals are), while
    other devices are unaffected."""
    body = {"sub": world.pat.sub, "reason": "left_the_practice"}
    resp = await call(world.client, "POST", "/v1/revocations", world.adm, world.adm_t, json=body)
    assert resp.status == 200, await resp.text()
    issued = len(await world.events("attestation.issued"))
    resp = await token_response(world.client, world.dev)
    assert resp.status == 401, await resp.text()
    assert (await resp.json())["error"] == "invalid_client"
    assert len(await world.events("attestation.issued")) == issued
    assert (await token_response(world.client, world.other_dev)).status == 200
