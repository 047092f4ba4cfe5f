"""Enrollment lookups for MQTT ingestion, without a database read per message.

A subject's row never changes after enrollment except to be revoked (gateway/auth/store.py
updates only ``revoked``), so an unrevoked row is kept in memory (bounded) and only its
revocation is looked at again: in the authority's ``revoked_subjects``, the set every
request over HTTP is checked against (revoked subjects and the devices of revoked patients,
this replica's revocations at once, any other replica's within ``REFRESH_EVERY``; a failed
read of it is a 503, so a message is retried rather than accepted on a stale list). The
device's key is parsed once too (``HolderKey.from_jwk`` caches by the JWK's text).

Unknown and revoked ids are not remembered: they are read from the database every time.
"""

from __future__ import annotations

from collections.abc import Set

from ..auth.store import IdentityStore, Subject
from ..auth.tokens import Authority
from ..vitals.intake import Lookup

__all__ = ["SUBJECTS_MAX", "Subjects"]

#: Subject rows kept; past it the cache starts again empty (1,000s of devices fit).
SUBJECTS_MAX = 20_000


class Subjects:
    def __init__(self, store: IdentityStore, authority: Authority) -> None:
        self.store = store
        self.authority = authority
        self._rows: dict[str, Subject] = {}

    async def lookup(self) -> Lookup:
        """The lookup for one message's intake (it runs in a thread): on the event loop,
        bring the revocation list up to date if it is due (a read in a thread at most once
        per ``REFRESH_EVERY``), then take it. Raises DatabaseUnavailable (503) if it cannot
        be read."""
        await self.authority.fresh()
        revoked = self.authority.revoked_subjects
        return lambda sid: self._subject(sid, revoked)

    def _subject(self, sid: str, revoked: Set[str]) -> Subject | None:
        """Blocking on a miss. None for a revoked id, as for an unknown one."""
        if sid in revoked:
            return None
        row = self._rows.get(sid)
        if row is None:
            row = self.store.subject(sid)
            if row is None or row.revoked is not None:
                return row
            if len(self._rows) >= SUBJECTS_MAX:
                self._rows.clear()
            self._rows[sid] = row
        return row
