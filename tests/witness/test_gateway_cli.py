"""``telegate verify`` / ``python -m ledger verify`` / ``telegate audit`` with ``--witness`` and
``--min-witnesses`` against a gateway served on loopback whose witnesses are real servers:
three witnesses, a quorum of two, one of them down."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import CONFIG, create_app
from gateway.witnessing import WITNESSING
from ledger.checkpoint import open_checkpoint
from ledger.log import Log
from ledger.note import Signer
from ledger.store import SQLiteStore

from .gateways import WitnessServer, gateway_config, log_vkey, until


def _where(client: Any) -> list[str]:
    """The gateway's identities may be in PostgreSQL (the PostgreSQL pass): the local
    invite must be written there, as an operator passes --database-url."""
    url = client.server.app[CONFIG].database_url
    return [] if url is None else ["--database-url", url]


async def cli(*args: str, module: str = "gateway.cli") -> tuple[int, str, str]:
    # A real process, awaited without blocking the loop that serves the gateway.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def gateway(aiohttp_client: Any, tmp_path: Path) -> AsyncIterator[tuple[Any, Any, list[str]]]:
    """A gateway with witnesses w0, w1 (up) and w2 (down); quorum 2, witnessed."""
    data = tmp_path / "gw"
    vkey = log_vkey(data)
    servers = [WitnessServer(tmp_path, f"w{i}.example/witness", vkey) for i in range(3)]
    for s in servers[:2]:
        await s.start()
    client = await aiohttp_client(create_app(gateway_config(data, servers, witness_quorum=2)))
    app = client.server.app
    await until("the quorum cosigns", lambda: app[WITNESSING].published >= 1)
    yield client, vkey, [s.vkey for s in servers]
    for s in servers:
        await s.stop()


def witness_flags(vkeys: list[str]) -> list[str]:
    return [arg for v in vkeys for arg in ("--witness", v)]


async def test_verify_counts_cosignatures(gateway: tuple[Any, str, list[str]]) -> None:
    client, vkey, witnesses = gateway
    url = str(client.make_url("/ledger/"))
    base = ["verify", "--quiet", "--vkey", vkey, *witness_flags(witnesses)]
    rc, out, err = await cli(*base, "--min-witnesses", "2", url)
    assert rc == 0, err
    assert out.startswith("OK test.example/telegate/log size ")
    assert "cosigned by 2 of 3 witnesses (at least 2 needed)" in out
    # The same verifier from the ledger package alone.
    rc, out, err = await cli(*base, "--min-witnesses", "2", url, module="ledger")
    assert rc == 0 and "cosigned by 2 of 3" in out, err

    rc, out, err = await cli(*base, url)  # default: every --witness
    assert rc == 1 and out == ""
    assert err.startswith("FAIL checkpoint: not witnessed: 2 of the 3 required"), err
    rc, _, err = await cli(*base, "--min-witnesses", "4", url)
    assert rc == 2 and "cannot be met" in err
    rc, _, err = await cli("verify", "--quiet", "--vkey", vkey, "--witness", vkey, url)
    assert rc == 2 and "cosignature/v1" in err  # a log key is not a witness key


async def test_audit_waits_for_a_witnessed_checkpoint(
    gateway: tuple[Any, str, list[str]], tmp_path: Path
) -> None:
    client, _, witnesses = gateway
    server = str(client.make_url("")).rstrip("/")
    data = str(tmp_path / "gw")
    rc, code, err = await cli("invite", "auditor", "--data-dir", data, *_where(client))
    assert rc == 0, err
    creds = tmp_path / "auditor.json"
    rc, _, err = await cli(
        "enroll", "--server", server, "--invite", code.strip(), "--out", str(creds)
    )
    assert rc == 0, err

    flags = witness_flags(witnesses)
    rc, out, err = await cli("audit", "--credentials", str(creds), *flags, "--min-witnesses", "2")
    assert rc == 0, err
    assert "identity.enrolled" in out
    assert "cosigned by w0.example/witness, w1.example/witness" in err
    # What it remembers is the witnessed checkpoint, cosignatures and all.
    assert b"\xe2\x80\x94 w0.example/witness " in creds.with_suffix(".seen").read_bytes()

    rc, _, err = await cli(
        "audit", "--credentials", str(creds), *flags, "--min-witnesses", "3", "--witness-wait", "1"
    )
    assert rc == 1
    assert err.startswith("error: no checkpoint cosigned by 3 of the 3 witnesses"), err


async def test_audit_keeps_both_checkpoints_of_a_fork(
    gateway: tuple[Any, str, list[str]], tmp_path: Path
) -> None:
    client, _, _ = gateway
    server = str(client.make_url("")).rstrip("/")
    data = tmp_path / "gw"
    rc, code, err = await cli("invite", "auditor", "--data-dir", str(data), *_where(client))
    creds = tmp_path / "auditor.json"
    rc, _, err = await cli(
        "enroll", "--server", server, "--invite", code.strip(), "--out", str(creds)
    )
    assert rc == 0, err
    # The auditor once saw another history signed by the same key (a split view).
    signer = Signer.from_skey((data / "keys" / "log.skey").read_text())
    fork = Log(SQLiteStore(tmp_path / "fork.db"), signer)
    fork.start()
    fork.append_sync(b"a history shown to someone else")
    seen = fork.checkpoint()
    fork.close()
    creds.with_suffix(".seen").write_bytes(seen)
    rc, _, err = await cli("audit", "--credentials", str(creds))
    assert rc == 1 and "fork?" in err and "auditor.fork" in err
    # Both signed notes, each checkable with the log's vkey alone: the proof of the fork.
    evidence = creds.with_suffix(".fork").read_bytes()
    before, now = evidence.split(b"--- checkpoint served now ---\n")
    assert before == b"--- checkpoint seen before ---\n" + seen
    assert open_checkpoint(now, signer.verifier).checkpoint.size > 1
