"""The audit index on a shared ledger: each replica keeps its own SQLite index (derived data,
docs/database.md), and an answer from one replica includes what the others appended."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.app import create_app
from gateway.appkeys import LOG
from gateway.config import Config
from gateway.db import Database
from tests.gateway.idclient import admin, get_token, invite_and_enroll


async def test_an_answer_from_one_replica_includes_events_another_appended(
    pg_url: str, aiohttp_client: Any, tmp_path: Path, session_redis: str
) -> None:
    data = tmp_path / "data"  # the key dir every replica shares
    db = Database(data, pg_url)
    db.upgrade()
    db.close()
    config = Config(
        data_dir=data, database_url=pg_url, log_origin="r.example/t/log", redis_url=session_redis
    )
    a = await aiohttp_client(create_app(config))
    b = await aiohttp_client(create_app(config))
    # b learns of a's appends only when asked: its idle refresh is an hour away.
    b.server.app[LOG].refresh_interval = 3600
    adm, adm_t = await admin(a, data)
    aud = await invite_and_enroll(a, adm, adm_t, "auditor")
    pat = await invite_and_enroll(a, adm, adm_t, "patient")
    aud_t = await get_token(a, aud)
    await get_token(a, pat)  # the last event: the patient's attestation, appended by a
    seen = b.server.app[LOG].size
    assert seen < a.server.app[LOG].size  # b's view of the log is behind

    # As behind one load balancer: the request names a's origin (the token's issuer and
    # the DPoP proof's URL) and reaches b.
    path = f"/v1/audit/events?subject={pat.sub}"
    url = a.make_url(path)
    headers = {
        "Authorization": f"DPoP {aud_t}",
        "DPoP": aud.dpop("GET", str(url), aud_t),
        "Host": f"{url.host}:{url.port}",
    }
    r = await b.get(path, headers=headers)
    assert r.status == 200, await r.text()
    page = await r.json()
    assert page["size"] > seen
    types = [row["event"]["type"] for row in page["rows"]]
    assert types == ["identity.enrolled", "attestation.issued"]
    await b.close()
    await a.close()
