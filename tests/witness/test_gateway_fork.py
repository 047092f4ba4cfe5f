"""Split view and rollback of a real gateway's log, caught by a real witness.

Two histories under one log key: a gateway restored from an older copy of its data
directory (rollback), and two gateways sharing a key (split view). The witness cosigns only
one history and refuses the other (409, then 422); the refused gateway raises the alarm (a
metric and a ``witness.alarm`` ledger event); a verifier holding a checkpoint of each
history reports the fork with both signed notes as evidence.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.appkeys import LOG
from gateway.witnessing import WITNESSING
from ledger.checkpoint import open_checkpoint
from ledger.note import Verifier
from ledger.verify import LogForked, check_fork

from .gateways import ORIGIN, WitnessServer, gateway_config, log_vkey, until
from .test_gateway import append


def alarms(app: Any) -> list[dict[str, Any]]:
    ledger = app[LOG]
    events = [json.loads(e) for e in ledger.store.read_entries(0, ledger.size)]
    return [e["data"] for e in events if e["type"] == "witness.alarm"]


async def witnessed_copy(client: Any) -> bytes:
    app = client.server.app
    size = app[LOG].size
    await until("witnessed", lambda: app[WITNESSING].published >= size)
    return await (await client.get("/ledger/checkpoint")).read()


async def test_a_rolled_back_gateway_is_refused_and_raises_the_alarm(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    data, backup = tmp_path / "gw", tmp_path / "backup"
    log = Verifier.from_vkey(log_vkey(data))
    w = await WitnessServer(tmp_path, "w.example/witness", log.vkey).start()
    try:
        # The backup is a copy of the data dir: the gateway's state in SQLite files there.
        cfg = gateway_config(data, [w], database_url=None)
        first = await aiohttp_client(create_app(cfg))
        await append(first, 3)
        await witnessed_copy(first)
        await first.close()
        shutil.copytree(data, backup)  # a backup, taken while stopped

        again = await aiohttp_client(create_app(cfg))
        await append(again, 10)
        honest = await witnessed_copy(again)  # the witness has cosigned this history
        await again.close()

        shutil.rmtree(data)
        shutil.copytree(backup, data)  # the rollback: restore the older copy
        restored = await aiohttp_client(create_app(cfg))
        app = restored.server.app
        # Its cosignatures say the witness was at the backup's size; the witness knows
        # better (409) and holds a larger tree than this log: alarm.
        await until(
            "the rollback alarm", lambda: any(a["reason"] == "rollback" for a in alarms(app))
        )
        assert w.seen[409] >= 1
        honest_size = open_checkpoint(honest, log).checkpoint.size
        assert app[LOG].size < honest_size
        # Grown past the cosigned size along another history, it cannot prove consistency.
        await append(restored, honest_size - app[LOG].size + 2)
        await until("422", lambda: any(a["reason"] == "inconsistent" for a in alarms(app)))
        assert w.seen[422] >= 1
        (alarm,) = [a for a in alarms(app) if a["reason"] == "inconsistent"]
        assert alarm == {
            "witness": "w.example/witness",
            "vkey": w.vkey,
            "status": 422,
            "reason": "inconsistent",
            "log_size": alarm["log_size"],
            "witness_size": honest_size,
        }
        metrics = await (await restored.get("/metrics")).text()
        assert (
            'telegate_witness_alarms_total{reason="inconsistent",witness="w.example/witness"}'
            in (metrics)
        )
        assert app[WITNESSING].status()["witnesses"][0]["alarm"] == "inconsistent"
        # The witness still serves the honest checkpoint, and nothing newer.
        path = f"/{hashlib.sha256(ORIGIN.encode()).hexdigest()}/checkpoint"
        async with restored.session.get(w.url + path) as r:
            kept = await r.read()
        assert open_checkpoint(kept, log).checkpoint == open_checkpoint(honest, log).checkpoint

        # A verifier that saw both: the log's own proof cannot join them. Both notes are
        # the evidence, each verifiable with the log's vkey alone.
        rolled = app[LOG].checkpoint()
        size = open_checkpoint(rolled, log).checkpoint.size
        proof = app[LOG].consistency_proof(honest_size, size)
        with pytest.raises(LogForked) as e:
            check_fork(kept, rolled, proof, log)
        assert set(e.value.evidence) == {kept, rolled}
        assert "are not consistent" in e.value.report() and rolled.decode() in e.value.report()
    finally:
        await w.stop()


async def test_two_gateways_under_one_key_get_one_history_witnessed(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    log = Verifier.from_vkey(log_vkey(a_dir))
    shutil.copytree(a_dir / "keys", b_dir / "keys")  # the same log key on two machines
    w = await WitnessServer(tmp_path, "w.example/witness", log.vkey).start()
    try:
        a = await aiohttp_client(create_app(gateway_config(a_dir, [w])))
        b = await aiohttp_client(create_app(gateway_config(b_dir, [w])))
        await append(a, 2)
        await append(b, 2)
        apps = [a.server.app, b.server.app]

        def refused() -> list[Any]:
            return [x for x in apps if any(al["status"] in (409, 422) for al in alarms(x))]

        await until("one side refused", lambda: len(refused()) == 1)
        (loser,) = refused()
        winner = apps[1 - apps.index(loser)]
        assert winner[WITNESSING].status()["witnesses"][0]["alarm"] is None
        assert w.seen[200] >= 1 and w.seen[409] + w.seen[422] >= 1
        # The served checkpoints of the two, checked against each other with either log's
        # proof, are a fork.
        cp_w = await witnessed_copy(a if winner is apps[0] else b)
        cp_l = loser[LOG].checkpoint()
        sizes = sorted(open_checkpoint(n, log).checkpoint.size for n in (cp_w, cp_l))
        proof = loser[LOG].consistency_proof(*sizes) if sizes[1] <= loser[LOG].size else []
        with pytest.raises(LogForked):
            check_fork(cp_w, cp_l, proof, log)
    finally:
        await w.stop()
