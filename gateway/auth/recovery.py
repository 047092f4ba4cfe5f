"""Rebuild issuance state from the ledger after a crash.

identity.db writes its per-token rows (issued tokens, spent client-assertion ids) without an
fsync of their own, so a power loss can drop the last ones. Each issuance is also an
``attestation.issued`` ledger event, durable before the token was handed out, so the rows
that still matter (tokens not yet expired, assertion ids that could still be replayed) are
recovered from the ledger's tail at start.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

from ledger.events import EventType
from ledger.log import Log

from .store import IdentityStore, TokenRecord

__all__ = ["rebuild_issuance"]

log = logging.getLogger("telegate.auth")
_CHUNK = 256
# A client assertion lives at most 5 minutes (plus skew) after the token it bought.
ASSERTION_LIFETIME = 300 + 30


def _epoch(stamp: str) -> int:
    return int(dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())


def rebuild_issuance(store: IdentityStore, ledger: Log, now: int, horizon: int) -> int:
    """Restore rows for issuances newer than ``now - horizon``; returns how many were missing.

    Blocking: reads the ledger backwards from its end until events get older than the horizon.
    """
    cutoff = now - horizon
    tokens: list[TokenRecord] = []
    assertions: list[tuple[str, int]] = []
    hi = ledger.size
    while hi > 0:
        lo = max(0, hi - _CHUNK)
        entries = ledger.store.read_entries(lo, hi)
        for i in range(hi - 1, lo - 1, -1):
            try:
                ev = json.loads(entries[i - lo])
                when = _epoch(ev["time"])
            except (ValueError, KeyError, TypeError):
                continue  # not a telegate event: nothing to restore from it
            if when < cutoff:
                hi = 0
                break
            if ev.get("type") != EventType.ATTESTATION_ISSUED:
                continue
            d = ev.get("data", {})
            tokens.append(
                TokenRecord(d["jti"], ev["subject"], d["role"], d["exp"], d["status_idx"], i, None)
            )
            if "assertion" in d:
                assertions.append((d["assertion"], when + ASSERTION_LIFETIME))
        else:
            hi = lo
    added = store.restore_issuance(tokens, assertions) if tokens else 0
    if added:
        log.warning("restored issuance rows from the ledger", extra={"fields": {"rows": added}})
    return added
