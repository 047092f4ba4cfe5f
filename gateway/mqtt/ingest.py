"""The gateway side of MQTT ingestion: a message on ``telegate/v1/devices/{id}/vitals``
becomes the same call ``POST /v1/vitals`` makes (gateway/vitals/posting.py), and its
answer the same JSON, a receipt or an RFC 9457 problem.

The broker authenticated the publisher and its ACL lets a device publish only under its
own id (docker/mosquitto/): so the topic names the device, as an access token does over
HTTP. The batch must be signed by that device: a batch signed by another enrolled
device's key is refused (403, audited as ``auth.refused``) and nothing is stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from ledger.errors import LedgerError
from ledger.events import Event, EventType

from ..appkeys import AUTHORITY, CONFIG, VITALS
from ..auth.jwk import unverified_part
from ..auth.refusals import REFUSALS
from ..auth.sources import pseudonym
from ..auth.tally import Refusal
from ..auth.tokens import Forbidden
from ..errors import BadRequest, GatewayError, PayloadTooLarge, UnsupportedMediaType
from ..errors import _problem as problem_of  # the one mapping of errors to problems
from ..recorder import record
from ..vitals.posting import compact_jws, post_batch
from .consumer import Answer, Inbound, Retry
from .subjects import Subjects
from .topics import PREFIX, device_of, receipts_topic, response_topic_allowed

__all__ = ["Ingest", "MismatchedDevice"]

log = logging.getLogger("telegate.mqtt")

JOSE = "application/jose"
#: Longest MQTT 5 correlation data echoed back.
MAX_CORRELATION = 256
ROUTE = f"mqtt:{PREFIX}/{{device_id}}/vitals"


class MismatchedDevice(Forbidden):
    """The topic names one device and the batch is signed by another."""


def _segment(topic: str) -> str | None:
    """The device segment of a topic matching the subscription, if it could name a
    receipts topic (no wildcard, bounded)."""
    parts = topic.split("/")
    if len(parts) != 5 or len(parts[3]) > 64 or any(c in parts[3] for c in "+#\0"):
        return None
    return parts[3] or None


class Ingest:
    """The consumer's handler for one application (gateway/mqtt/consumer.py)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        authority = app[AUTHORITY]
        self.subjects = Subjects(authority.store, authority)

    async def __call__(self, m: Inbound) -> Answer | None:
        segment = _segment(m.topic)
        if segment is None:
            log.warning("mqtt message on an unusable topic dropped")
            return None
        topic = receipts_topic(segment)
        correlation = m.correlation
        device = device_of(m.topic)
        try:
            if correlation is not None and len(correlation) > MAX_CORRELATION:
                correlation = None
                raise BadRequest(f"correlation data is at most {MAX_CORRELATION} bytes")
            if m.response_topic is not None:
                if not response_topic_allowed(segment, m.response_topic):
                    raise BadRequest(f"the response topic must be {topic} or under it")
                topic = m.response_topic
            if device is None:
                raise BadRequest("the topic does not name a device id")
            body, status = await self._post(device, m)
            return Answer(topic, body, "application/json", correlation, status)
        except Retry:
            raise
        except Exception as e:
            status, body = await self._refused(device, e)
            return Answer(topic, body, "application/problem+json", correlation, status)

    async def _post(self, device: str, m: Inbound) -> tuple[bytes, int]:
        limit = self.app[CONFIG].max_body_size
        if len(m.payload) > limit:
            raise PayloadTooLarge(f"a batch is at most {limit} bytes")
        if m.content_type is not None and m.content_type != JOSE:
            raise UnsupportedMediaType(f"send the signed batch as {JOSE} (a compact JWS)")
        jws = compact_jws(m.payload)
        lookup = await self.subjects.lookup()
        try:
            posted = await post_batch(self.app[VITALS], lookup, device, jws)
        except GatewayError:
            # A batch signed by another device is refused (its signature does not verify
            # with the topic's device's key, or no such device is enrolled): only then is
            # the signer looked up, so an accepted batch costs no lookup and no thread hop.
            await self._check_signer(device, jws)
            raise
        return json.dumps(posted.body).encode(), posted.status

    async def _check_signer(self, device: str, jws: str) -> None:
        """Raise MismatchedDevice if the JWS's ``kid`` is the key of another subject."""
        try:
            kid = unverified_part(jws, 0).get("kid")
        except Exception:  # malformed: post_batch says how, as HTTP does
            return
        if not isinstance(kid, str) or len(kid) > 128:
            return
        store = self.app[AUTHORITY].store
        signer = await asyncio.to_thread(store.subject_by_jkt, kid)
        if signer is not None and signer != device:
            raise MismatchedDevice(
                "the batch is signed by another device than the one its topic names",
                signer=signer,
            )

    async def _refused(self, device: str | None, e: Exception) -> tuple[int, bytes]:
        """The problem answering ``e``; Retry for a passing one (503). Refusals of who the
        device is or may do (401, 403) are audited as HTTP's are."""
        resp = problem_of(e)
        if resp.status == 503:
            raise Retry(type(e).__name__) from e
        assert isinstance(resp, web.Response) and isinstance(resp.body, bytes)
        body = resp.body
        if isinstance(e, MismatchedDevice):
            # The signer's id is for the audit log, not for the publisher.
            data: dict[str, Any] = json.loads(body)
            data.pop("signer", None)
            body = json.dumps(data).encode()
        if isinstance(e, GatewayError) and e.status in (401, 403):
            await self._audit(device, e)
        return resp.status, body

    async def _audit(self, device: str | None, e: GatewayError) -> None:
        data: dict[str, Any] = {
            "route": ROUTE,
            "method": "PUBLISH",
            "status": e.status,
            "problem": e.slug,
        }
        if isinstance(e, MismatchedDevice):
            data["signer"] = e.extra["signer"]
        store = self.app[AUTHORITY].store
        known = None if device is None else await asyncio.to_thread(store.subject, device)
        if known is None:
            refusals = self.app[REFUSALS]
            kind = Refusal(ROUTE, "PUBLISH", e.status, e.slug)
            refusals.note(pseudonym(refusals.key, "mqtt"), kind)
            return
        assert device is not None
        try:
            await record(self.app, Event.now(EventType.AUTH_REFUSED, device, data=data))
        except LedgerError:
            log.error("could not record a refusal", extra={"fields": data})
