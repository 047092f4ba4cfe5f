"""What this gateway remembers of its peers, in the ``federation`` store (``gateway.db``:
federation.db by default, the shared PostgreSQL database at scale).

Per peer log (by vkey): the largest checkpoint accepted from it, which every newer receipt
must extend, and the evidence once it was caught signing two histories. Per peer issuer:
the JWKS pinned on first use. Per token issued here by exchange, until it expires: the
peer's token and status list entry it was issued for, which are re-checked while it lives
(docs/federation.md). Durable at commit (``synchronous=FULL`` on SQLite): a checkpoint
forgotten in a crash would let the peer show a fork of the period it covered.

Several replicas share this state. The two decisions made on it, the kept checkpoint and
the pinned JWKS, are compare-and-swap: a replica replaces only the value it checked against
(:meth:`FederationState.advance`, :meth:`FederationState.pin`), and otherwise learns the
value another replica kept meanwhile and decides again against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..db.dialect import for_update, reading, upsert, writing
from .tables import checkpoints, exchanged, forks, pins
from .verify import StatusRef

__all__ = ["FederationState", "Link"]


@dataclass(frozen=True, slots=True)
class Link:
    """A token this gateway issued by exchange, and the peer's token it was issued for: what
    a revocation at the peer is followed by while this gateway's token lives."""

    jti: str
    sub: str
    status_idx: int
    exp: int
    peer: str
    foreign_jti: str
    foreign: StatusRef


# Built once: SQLAlchemy reuses each statement's compiled form (docs/database.md, Cost).
_LATEST = sa.select(checkpoints.c.note).where(checkpoints.c.log == sa.bindparam("log"))
_KEPT = for_update(sa.select(checkpoints.c.size, checkpoints.c.note)).where(
    checkpoints.c.log == sa.bindparam("log")
)
_GROW = (  # an UPDATE's parameters may not be named after its columns
    checkpoints.update()
    .where(checkpoints.c.log == sa.bindparam("l"), checkpoints.c.size < sa.bindparam("s"))
    .values(size=sa.bindparam("s"), note=sa.bindparam("n"))
)
_FORK = sa.select(forks.c.a, forks.c.b).where(forks.c.log == sa.bindparam("log"))
_PINNED = sa.select(pins.c.jwks, pins.c.fetched).where(pins.c.issuer == sa.bindparam("issuer"))
_REPIN = (
    pins.update()
    .where(pins.c.issuer == sa.bindparam("i"), pins.c.jwks == sa.bindparam("old"))
    .values(jwks=sa.bindparam("j"), fetched=sa.bindparam("f"))
)
_EXPIRE = exchanged.delete().where(exchanged.c.exp < sa.bindparam("expired"))
_LINKS = sa.select(exchanged).where(exchanged.c.exp >= sa.bindparam("expired"))
_LINK = sa.select(exchanged).where(exchanged.c.jti == sa.bindparam("jti"))


class FederationState:
    """Blocking: call from a thread. ``engine`` comes from ``Database.open("federation")``;
    ``close`` leaves it open (the database layer disposes of it)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def latest(self, log: str) -> bytes | None:
        """The largest checkpoint of ``log`` accepted so far."""
        with reading(self._engine) as conn:
            note = conn.execute(_LATEST, {"log": log}).scalar()
        return None if note is None else bytes(note)

    def advance(self, log: str, size: int, note: bytes, checked: bytes | None) -> bytes | None:
        """Keep ``note`` (of tree ``size``) as the latest checkpoint of ``log`` if the kept
        one is still ``checked``, the one it was found consistent with (None: none was
        kept). Returns the checkpoint kept now: ``note`` itself, or the one another replica
        kept meanwhile, which ``note`` has not been checked against. The kept size never
        goes down. The row is locked from read to write (``FOR UPDATE``; ``BEGIN IMMEDIATE``
        on SQLite), and two first checkpoints race on the primary key."""
        with writing(self._engine) as conn:
            row = conn.execute(_KEPT, {"log": log}).first()
            kept = None if row is None else bytes(row.note)
            if kept != checked:
                return kept
            if row is None:
                upsert(conn, checkpoints, [{"log": log, "size": size, "note": note}], ["log"], [])
                # A replica that inserted first wins; read what is kept now (on PostgreSQL
                # this statement sees the other's committed row).
                return bytes(conn.execute(_LATEST, {"log": log}).scalar_one())
            if size > row.size:
                conn.execute(_GROW, {"l": log, "s": size, "n": note})
                return note
            return kept

    def fork(self, log: str) -> tuple[bytes, bytes] | None:
        """The evidence that ``log`` forked, if it was ever caught."""
        with reading(self._engine) as conn:
            row = conn.execute(_FORK, {"log": log}).first()
        return None if row is None else (bytes(row.a), bytes(row.b))

    def record_fork(self, log: str, now: int, evidence: tuple[bytes, bytes]) -> None:
        """Keep the first evidence of a fork; the peer stays refused until an operator
        removes it (see docs/federation.md)."""
        row = {"log": log, "seen": now, "a": evidence[0], "b": evidence[1]}
        with writing(self._engine) as conn:
            upsert(conn, forks, [row], ["log"], update=[])

    def pinned(self, issuer: str) -> tuple[str, int] | None:
        """The JWKS pinned for ``issuer`` and when it was fetched."""
        with reading(self._engine) as conn:
            row = conn.execute(_PINNED, {"issuer": issuer}).first()
        return None if row is None else (str(row.jwks), int(row.fetched))

    def pin(self, issuer: str, jwks: str, fetched: int, replaces: str | None) -> bool:
        """Pin ``jwks`` for ``issuer`` in place of ``replaces`` (None: on first use), fetched
        at ``fetched``; False, changing nothing, if the pin is no longer ``replaces``
        (another replica pinned or rotated first: decide again from what it kept). A first
        pin that loses the race to the same JWKS counts as pinned."""
        with writing(self._engine) as conn:
            if replaces is None:
                row = {"issuer": issuer, "jwks": jwks, "fetched": fetched}
                upsert(conn, pins, [row], ["issuer"], update=[])
                return bool(conn.execute(_PINNED, {"issuer": issuer}).one().jwks == jwks)
            done = conn.execute(_REPIN, {"i": issuer, "old": replaces, "j": jwks, "f": fetched})
            return done.rowcount == 1

    def link(self, link: Link, expired: int) -> None:
        """Keep ``link``; forget those whose tokens expired before ``expired``."""
        row = {
            "jti": link.jti,
            "sub": link.sub,
            "status_idx": link.status_idx,
            "exp": link.exp,
            "peer": link.peer,
            "foreign_jti": link.foreign_jti,
            "status_uri": link.foreign.uri,
            "foreign_idx": link.foreign.idx,
        }
        with writing(self._engine) as conn:
            conn.execute(_EXPIRE, {"expired": expired})
            upsert(conn, exchanged, [row], ["jti"])

    def links(self, expired: int) -> list[Link]:
        """The links whose tokens expire at ``expired`` or later."""
        with reading(self._engine) as conn:
            rows = conn.execute(_LINKS, {"expired": expired}).all()
        return [_link(r) for r in rows]

    def linked(self, jti: str) -> Link | None:
        """The link of this gateway's token ``jti``, if it was issued by exchange (by any
        replica) and not forgotten yet."""
        with reading(self._engine) as conn:
            row = conn.execute(_LINK, {"jti": jti}).first()
        return None if row is None else _link(row)

    def close(self) -> None:
        """Nothing to release: kept so callers' lifecycles need not change."""


def _link(r: sa.Row[Any]) -> Link:
    return Link(
        r.jti,
        r.sub,
        int(r.status_idx),
        int(r.exp),
        r.peer,
        r.foreign_jti,
        StatusRef(r.status_uri, int(r.foreign_idx)),
    )
