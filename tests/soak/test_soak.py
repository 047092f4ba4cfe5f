"""The soak (bench/soak.py) for two minutes, as a test: a real ``telegate serve`` under the
full mix (enrollments, tokens, consents, calls with WebSocket signalling, vitals from 500
devices, audit queries). No timing is asserted; what fails it is a 5xx that is not a
deliberate shed, descriptors leaking (the count at the end against the count after the
first minute, with slack for the calls and keep-alive connections open at either moment),
a log that ``telegate verify`` refuses, or an acknowledged receipt missing from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import FD_SLACK, Settings, soak

pytestmark = pytest.mark.slow


async def test_two_minutes_of_mixed_traffic(tmp_path: Path) -> None:
    res = await soak(Settings(minutes=2), tmp_path)
    for m in res.minutes:
        print(m["minute"], m["rss_kib"], m["fds"], m["ledger_size"], m["errors"])
    assert not res.fivexx, res.fivexx
    assert res.verified, res.verify_output
    assert res.acks > 1000, res.acks  # the load ran: vitals alone are 50 batches a second
    assert res.missing == 0, f"{res.missing} of {res.acks} acknowledged receipts not in the log"
    assert res.fds_end <= res.fds_warm + FD_SLACK, (res.fds_warm, res.fds_end)
    # Every kind of operation was answered, so each path above was exercised.
    answered = {op for m in res.minutes for op in m["ops"]}
    for op in ("vitals", "token", "enroll.redeem", "consent.grant", "audit", "ws.relay"):
        assert op in answered, (op, sorted(answered))
    assert res.counts["calls"] > 0, res.counts
