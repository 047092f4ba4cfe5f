"""Every refused authentication or authorization is audited, without letting strangers
write to the ledger at will.

- A refusal of an authenticated caller (an attestation's ``sub``, or a client that proved
  its key on the token endpoint) is a ledger event of its own, ``auth.refused``, before
  the answer goes out.
- A refusal of an anonymous caller is counted (:mod:`.tally`): per source and window, one
  ``auth.refused_summary`` event with exact counts, written when the window closes (by a
  background task on the injected clock) and on a clean shutdown. The first refusal of a
  source in a window is logged at once (a bounded log line, the pseudonym only), not put
  on the ledger: an entry per new source would hand an attacker with many addresses one
  ledger write per address, and the summary follows within one window anyway.
- A source over its token bucket of anonymous refusals is answered 429 with
  ``Retry-After`` before any handler runs, and that is counted too. With ``redis_url`` the
  bucket is shared by the replicas (gateway/shared/buckets.py); counts and summaries stay
  per replica (each replica's summary has its own exact counts).

Events name the route template, the problem type and the source's keyed pseudonym
(:mod:`.sources`); never the credential, the body, the address or anything else the
client sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from ledger.errors import LedgerError
from ledger.events import Event, EventType, format_time

from ..appkeys import AUTHORITY, CLOCK, CONFIG, PRINCIPAL
from ..errors import GatewayError
from ..recorder import record
from ..shared.buckets import SharedBuckets
from ..shared.client import REDIS, SharedUnavailable, key_prefix
from .sources import Networks, load_pseudonym_key, parse_networks, pseudonym, source_address
from .tally import Refusal, Summary, Tally

__all__ = [
    "CALLER",
    "REFUSALS",
    "Refusals",
    "TooManyRequests",
    "note_anonymous",
    "recorded_elsewhere",
    "refusal_middleware",
    "refusals_ctx",
]

log = logging.getLogger("telegate.auth")

ANONYMOUS = "anonymous"


class TooManyRequests(GatewayError):
    status = 429
    slug = "too-many-requests"
    title = "Too many refused requests from this source"


class Refusals:
    """The tally of anonymous refusals joined to the ledger and a clock."""

    def __init__(
        self,
        tally: Tally,
        key: bytes,
        trusted: Networks,
        clock: Callable[[], float],
        write: Callable[[Event], Awaitable[object]],
    ) -> None:
        self.tally = tally
        self.key = key
        self.trusted = trusted
        self.clock = clock
        self.write = write
        self._pending: list[Summary] = []
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        #: The replicas' shared buckets (Redis), if any; and what their answers taught
        #: this replica: source -> when its shared bucket has a token again.
        self.shared: SharedBuckets | None = None
        self._empty_until: dict[str, float] = {}
        self._spending: set[asyncio.Task[None]] = set()

    def source(self, request: web.Request) -> str:
        """The keyed pseudonym of the request's source."""
        fwd = request.headers.getall("X-Forwarded-For", []) if self.trusted else []
        return pseudonym(self.key, source_address(request.remote, fwd, self.trusted))

    def admit(self, source: str, kind: Refusal) -> None:
        """Raise TooManyRequests (counted as ``kind`` with status 429) if ``source`` has
        spent its anonymous refusals."""
        now = self.clock()
        wait = self.tally.retry_after(source, now)
        if (until := self._empty_until.get(source)) is not None:
            if until > now:
                wait = max(wait or 0.0, until - now)
            else:
                del self._empty_until[source]
        if wait is not None:
            self.tally.count(source, kind, now, limited=True)
            raise TooManyRequests(
                "too many refused requests from this address; retry later",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )

    def note(self, source: str, kind: Refusal) -> None:
        """Count one anonymous refusal (and spend a token of the shared bucket, meanwhile)."""
        now = self.clock()
        if self.shared is not None and len(self._spending) < MAX_SPENDING:
            task = asyncio.get_running_loop().create_task(self._spend_shared(source, now))
            self._spending.add(task)
            task.add_done_callback(self._spending.discard)
        if self.tally.count(source, kind, now):
            log.warning(
                "anonymous refusals from a source",
                extra={"fields": {"source": source, "route": kind.route, "problem": kind.problem}},
            )

    async def _spend_shared(self, source: str, now: float) -> None:
        assert self.shared is not None
        try:
            wait = await self.shared.spend(source, now)
        except SharedUnavailable:
            return  # fail open: this replica's own bucket still limits the source
        if wait is not None:
            if len(self._empty_until) >= self.tally.max_sources:
                t = self.clock()
                self._empty_until = {s: u for s, u in self._empty_until.items() if u > t}
            if len(self._empty_until) < self.tally.max_sources:
                self._empty_until[source] = now + wait

    async def settle(self) -> None:
        """Wait for the shared spends under way (shutdown)."""
        if self._spending:
            await asyncio.gather(*self._spending, return_exceptions=True)

    async def flush(self) -> int:
        """Write the summaries of every window closed by now; how many were written."""
        return await self._write(self.tally.close_due(self.clock()))

    async def flush_all(self) -> int:
        """Write the summaries of everything counted, the open window too (shutdown)."""
        return await self._write(self.tally.close_all(self.clock()))

    async def run(self, poll: float = 1.0) -> None:
        """Flush closed windows every ``poll`` seconds until ``stop``."""
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), poll)
            except TimeoutError:
                try:
                    await self.flush()
                except Exception:
                    # Keep flushing later windows; what was counted stays for the next try.
                    log.exception("flushing refusal summaries failed")

    def stop(self) -> None:
        self._stop.set()

    async def _write(self, summaries: list[Summary]) -> int:
        async with self._lock:
            batch, self._pending = self._pending + summaries, []
            # All at once, so the ledger's writer commits them in a few groups rather than
            # one commit per source.
            results = await asyncio.gather(
                *(self.write(summary_event(s)) for s in batch), return_exceptions=True
            )
            failed = [
                (s, r) for s, r in zip(batch, results, strict=True) if isinstance(r, Exception)
            ]
            if failed:
                # Kept for the next flush; bounded to a few windows' worth, then the oldest
                # are dropped, loudly, with their counts in the log.
                cap = 4 * (self.tally.max_sources + 1)
                kept = [s for s, _ in failed]
                for lost in kept[:-cap]:
                    log.error("refusal summary lost", extra={"fields": _fields(lost)})
                self._pending = kept[-cap:]
                error = str(failed[0][1])
                log.error("could not record refusal summaries", extra={"fields": {"error": error}})
            for r in results:
                if isinstance(r, BaseException) and not isinstance(r, Exception):
                    raise r  # cancellation and the like are not ours to swallow
            return len(batch) - len(failed)


def _fields(s: Summary) -> dict[str, object]:
    return {"source": s.source, "start": s.start, "total": s.total}


def _at(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(t), dt.UTC)


def summary_event(s: Summary) -> Event:
    """The ``auth.refused_summary`` event of one source's window, timed at its end."""
    data: dict[str, object] = {
        "source": s.source,
        "window": {"start": format_time(_at(s.start)), "seconds": s.seconds},
        "first": format_time(_at(s.first)),
        "last": format_time(_at(s.last)),
        "total": s.total,
        "rate_limited": s.limited,
        "counts": [kind.as_json(n) for kind, n in s.counts],
    }
    end = _at(s.start + s.seconds)
    return Event.now(EventType.AUTH_REFUSED_SUMMARY, ANONYMOUS, clock=lambda: end, data=data)


REFUSALS = web.AppKey("refusals", Refusals)
#: Shared spends under way at once, at most; beyond, a refusal spends only the local bucket.
MAX_SPENDING = 256
#: The keyed pseudonym of the request's source (set for every request).
SOURCE = web.RequestKey("source", str)
#: A caller authenticated by other means than an attestation: the client that proved its
#: key on the token endpoint. Its refusals are its own events, like an attestation's.
CALLER = web.RequestKey("caller", str)
#: This request's refusal was already recorded or counted by its handler.
_NOTED = web.RequestKey("refusal_noted", bool)


async def refusals_ctx(app: web.Application) -> AsyncIterator[None]:
    """The tally and its flusher; after the ledger opens, and flushed before it closes."""
    config = app[CONFIG]
    key = await asyncio.to_thread(load_pseudonym_key, config.key_dir, create=True)
    tally = Tally(
        window=config.refusal_window,
        max_sources=config.refusal_max_sources,
        rate=config.refusal_rate,
        burst=config.refusal_burst,
    )
    trusted = parse_networks(config.trusted_proxies)
    refusals = Refusals(tally, key, trusted, app[CLOCK], lambda ev: record(app, ev))
    if REDIS in app:
        refusals.shared = SharedBuckets(
            app[REDIS], key_prefix(config.log_origin), config.refusal_rate, config.refusal_burst
        )
    app[REFUSALS] = refusals
    task = asyncio.create_task(refusals.run(min(1.0, config.refusal_window / 4)))
    try:
        yield
    finally:
        refusals.stop()
        await task
        await refusals.settle()
        await refusals.flush_all()


#: Methods recorded as sent; any other is recorded as OTHER. A client chooses the method
#: freely (up to the request line's 8 KiB), and what a client chooses must not set the
#: size of a ledger entry or the number of rows in a summary.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _kind(request: web.Request, status: int, problem: str, error: str = "") -> Refusal:
    info = request.match_info
    route = info.route.resource.canonical if info.route.resource is not None else "unmatched"
    method = request.method if request.method in _METHODS else "OTHER"
    return Refusal(route, method, status, problem, error)


def note_anonymous(request: web.Request, status: int, problem: str, error: str = "") -> None:
    """Count an anonymous refusal a handler records itself (instead of the middleware)."""
    request[_NOTED] = True
    request.app[REFUSALS].note(request[SOURCE], _kind(request, status, problem, error))


def recorded_elsewhere(request: web.Request) -> None:
    """The handler put this request's refusal on the ledger: the middleware adds none."""
    request[_NOTED] = True


@web.middleware
async def refusal_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    refusals = request.app[REFUSALS]
    source = request[SOURCE] = refusals.source(request)
    refusals.admit(source, _kind(request, TooManyRequests.status, TooManyRequests.slug))
    auth = request.app.get(AUTHORITY)
    if auth is not None:
        # What other replicas revoked, read in a thread once a second, before any handler
        # reads it on the event loop (Authority.refresh).
        await auth.fresh()
        # A token signed by a key another host published since: learn it off the loop too.
        await auth.know_kid(request.headers.get("Authorization"))
    try:
        return await handler(request)
    except GatewayError as e:
        if request.get(_NOTED):
            raise
        if e.status in (401, 403) or e.slug == "invalid-invite" or _refused_grant(e):
            await _record(request, e)
        raise


# Token endpoint refusals that are about the caller's credentials or rights (RFC 6749 5.2
# returns some of them as 400): recorded. Malformed requests and the DPoP nonce handshake
# (use_dpop_nonce) are ordinary protocol traffic and are not.
_RECORDED_GRANT_ERRORS = frozenset({"invalid_client", "invalid_dpop_proof", "invalid_scope"})


def _refused_grant(e: GatewayError) -> bool:
    return e.slug == "oauth-error" and e.extra.get("error") in _RECORDED_GRANT_ERRORS


async def _record(request: web.Request, e: GatewayError) -> None:
    kind = _kind(request, e.status, e.slug, str(e.extra.get("error", "")))
    principal = request.get(PRINCIPAL)
    actor = principal.sub if principal is not None else request.get(CALLER)
    if actor is None:
        request.app[REFUSALS].note(request[SOURCE], kind)
        return
    data = kind.as_json(1)
    del data["count"]
    data["source"] = request[SOURCE]
    try:
        await record(request.app, Event.now(EventType.AUTH_REFUSED, actor, data=data))
    except LedgerError:
        # The refusal stands even if the ledger cannot take the event; say so loudly.
        log.error("could not record a refusal", extra={"fields": data})
