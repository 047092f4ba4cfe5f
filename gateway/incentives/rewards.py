"""Reward credentials: an SD-JWT VC (IETF SD-JWT, SD-JWT VC; the ``sd-jwt`` reference
implementation) for each passed period, signed by the gateway's current signing key (the
one its attestations and status lists use, published in its JWKS), bound to the patient's
enrolled key (``cnf.jwk``), with ``program``, ``period``, ``result``, ``points`` and
``evaluation`` (the ledger index of the evaluation) selectively disclosable, and an entry in
the rewards' own Token Status List (``/v1/rewards/status``) so it can be revoked.

The patient's id is not in the credential: a verifier learns who presents it from the key
binding, and learns the evaluation's ledger entry (which names the patient) only if the
patient discloses ``evaluation``.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
from jwcrypto.jwk import JWK
from sd_jwt.common import SDObj
from sd_jwt.issuer import SDJWTIssuer
from sqlalchemy.exc import IntegrityError

from ledger.events import Event, EventType
from ledger.log import Receipt

from ..auth.keys import SigningKey
from ..auth.status import StatusList
from ..auth.tokens import Authority
from ..clock import stamped
from .program import Program
from .store import Evaluation, IncentiveStore, Reward

__all__ = ["STATUS_PATH", "TYP", "VCT", "Rewards", "credential"]

TYP = "dc+sd-jwt"
#: The credential type (SD-JWT VC ``vct``).
VCT = "urn:telegate:incentive-reward:1"
STATUS_PATH = "/v1/rewards/status"
STATUS_TTL = 60
#: Seconds after which a reward row reserved and never completed is taken for abandoned.
RESERVATION_TIMEOUT = 120
Append = Callable[[Event], Awaitable[Receipt]]


def credential(
    key: SigningKey,
    origin: str,
    program: Program,
    e: Evaluation,
    holder: dict[str, str],
    idx: int,
    now: int,
) -> str:
    """The SD-JWT VC (issuance form: the JWT and every disclosure) of a passed evaluation,
    signed with ``key`` and bound to the public JWK ``holder``."""
    claims: dict[Any, Any] = {
        "iss": origin,
        "iat": now,
        "vct": VCT,
        "status": {"status_list": {"idx": idx, "uri": origin + STATUS_PATH}},
        SDObj("program"): program.id,
        SDObj("program_name"): program.name,
        SDObj("period"): e.period,
        SDObj("result"): e.result,
        SDObj("points"): e.points,
        SDObj("evaluation"): e.ledger_index,
    }
    issuer = SDJWTIssuer(
        claims,
        JWK.from_pyca(key.private),
        holder_key=JWK(**holder),
        sign_alg=key.alg,
        extra_header_parameters={"typ": TYP, "kid": key.kid},
    )
    out: str = issuer.sd_jwt_issuance
    return out


class Rewards:
    """Issues, lists and revokes reward credentials. Blocking calls run in threads."""

    def __init__(self, store: IncentiveStore, authority: Authority, append: Append) -> None:
        self.store = store
        self.authority = authority
        self.append = append

    async def issue(self, e: Evaluation, program: Program, origin: str) -> Reward | None:
        """The credential for a passed evaluation, issued once (None if it failed, or the
        patient's key is gone)."""
        if not e.passed or e.ledger_index is None:
            return None
        subject = await asyncio.to_thread(self.authority.store.subject, e.patient)
        if subject is None or subject.revoked is not None:
            return None
        now = self.authority.now()
        rid = secrets.token_urlsafe(18)
        try:
            idx = await asyncio.to_thread(
                self.store.reserve_reward, rid, e.patient, e.program, e.period, now
            )
        except IntegrityError:
            # Issued already (another request, another replica), or reserved by an issuer
            # that stopped before its ledger append: that row is let go after a while.
            stale = await asyncio.to_thread(
                self.store.drop_stale_reservation,
                e.patient,
                e.program,
                e.period,
                now - RESERVATION_TIMEOUT,
            )
            return await self.issue(e, program, origin) if stale else None
        try:
            receipt = await self.append(
                stamped(
                    lambda: now,
                    EventType.REWARD_ISSUED,
                    "gw:self",
                    subject=e.patient,
                    data={
                        "reward": rid,
                        "program": e.program,
                        "period": e.period,
                        "status_idx": idx,
                        "evaluation": e.ledger_index,
                    },
                )
            )
        except BaseException:
            await asyncio.to_thread(self.store.drop_reward, rid)
            raise
        credential = self._sign(e, program, origin, subject.jwk, idx, now)
        await asyncio.to_thread(self.store.complete_reward, rid, credential, receipt.index)
        return Reward(
            idx, rid, e.patient, e.program, e.period, credential, now, None, receipt.index
        )

    def _sign(
        self,
        e: Evaluation,
        program: Program,
        origin: str,
        holder: dict[str, str],
        idx: int,
        now: int,
    ) -> str:
        return credential(self.authority.keys.signing_key(), origin, program, e, holder, idx, now)

    async def revoke(self, rid: str, actor: str) -> Reward | None:
        """Set the reward's status bit; None if there is no live reward with that id."""
        now = self.authority.now()
        if not await asyncio.to_thread(self.store.revoke_reward, rid, now):
            return None
        r = await asyncio.to_thread(self.store.reward, rid)
        assert r is not None
        await self.append(
            stamped(
                lambda: now,
                EventType.REWARD_REVOKED,
                actor,
                subject=r.patient,
                data={"reward": rid, "status_idx": r.status_idx},
            )
        )
        return r

    async def status_list_token(self, origin: str) -> str:
        """The rewards' Token Status List as a JWT (``typ: statuslist+jwt``), signed like
        the attestations' list."""
        revoked, top = await asyncio.to_thread(self.store.revoked_indexes)
        bits = StatusList(top + 1)
        for i in revoked:
            bits.set(i)
        now = self.authority.now()
        key = self.authority.keys.signing_key()
        claims = {
            "sub": origin + STATUS_PATH,
            "iat": now,
            "exp": now + 300,
            "ttl": STATUS_TTL,
            "status_list": bits.encode(),
        }
        return jwt.encode(
            claims,
            key.private,
            algorithm=key.alg,
            headers={"kid": key.kid, "typ": "statuslist+jwt"},
        )
