"""HTTP face of identity: discovery, invites, enrollment, the token endpoint, receipts,
introspection, status lists and revocation. Handlers are thin; rules live in the modules
beside this one."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import jwt
from aiohttp import web
from yarl import URL

from ledger.events import Event, EventType, commit, new_salt
from ledger.log import Receipt

from ..appkeys import AUTHORITY, CONFIG, CONSENT_GUARD, INVALIDATIONS, LOG, PRINCIPAL
from ..consent.guard import Party
from ..errors import (
    BadRequest,
    Conflict,
    GatewayError,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from ..invalidation import Invalidation, Kind
from ..jsonio import loads
from ..recorder import event, record
from .dpop import DPoPError, DPoPProof, UseNonce, check_proof
from .enroll import (
    check_device_fields,
    check_invite_request,
    hash_code,
    is_subject_id,
    new_code,
    new_subject_id,
)
from .jwk import ALGORITHMS, HolderKey, InvalidKey, unverified_part
from .names import check_display_name
from .refusals import CALLER
from .store import Invite, Subject, assertion_key
from .tokens import ROLE_SCOPES, STATUS_LIST_ID, Authority, Principal, Unauthorized

__all__ = [
    "PEER_AUDIENCES",
    "TOKEN_EXCHANGE",
    "OAuthError",
    "authenticate",
    "origin",
    "read_body",
    "read_form",
    "read_json",
    "request_url",
    "setup",
    "shared_auth_middleware",
]

MAX_JSON = 16 * 1024
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME = 300  # SMART Backend Services: exp no more than five minutes ahead
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 RFC 8693

#: The RFC 8693 token exchange (gateway.federation), when a trust list is configured: it
#: lives beside this module, which it builds on, so it is handed in rather than imported.
TOKEN_EXCHANGE: web.AppKey[Callable[[web.Request, dict[str, str]], Awaitable[web.Response]]] = (
    web.AppKey("token_exchange")
)
#: Issuers of the trust list: the RFC 8707 resources a token may also be minted for.
PEER_AUDIENCES = web.AppKey("peer_audiences", frozenset[str])
#: The supply chain's check of a device's UDI at enrollment (gateway.supply.provenance):
#: ``(udi or None, the device key's jkt) -> the unit's normal form or None``; raises a
#: problem when the device's custody does not show it genuine, or another device holds the
#: unit. Handed in like TOKEN_EXCHANGE.
DEVICE_PROVENANCE: web.AppKey[Callable[[Any, str], Awaitable[str | None]]] = web.AppKey(
    "device_provenance"
)


class InvalidInvite(GatewayError):
    status = 400
    slug = "invalid-invite"
    title = "The invite is unknown, used or expired"


class OAuthError(GatewayError):
    """Token endpoint failures: problem+json that also carries RFC 6749's ``error`` code."""

    status = 400
    slug = "oauth-error"
    title = "Token request refused"

    def __init__(
        self, error: str, detail: str, status: int = 400, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail, headers=headers, error=error)
        self.status = status


# RFC 9110 7.2: Host is uri-host [":" port]; a reg-name (ASCII; IDNs arrive as A-labels)
# or a bracketed IP literal. Anything else is refused rather than handed to yarl.
_HOST = re.compile(r"(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?", re.ASCII)


def _as_received(request: web.Request) -> URL:
    """This request's URL built from its Host header. Raises BadRequest when the Host is
    missing, empty or not ``host[:port]`` (yarl would raise ValueError: a 500)."""
    if not _HOST.fullmatch(request.host):
        raise BadRequest("the Host header must be host[:port]")
    try:
        return request.url
    except ValueError as e:  # a port above 65535
        raise BadRequest("the Host header must be host[:port]") from e


def origin(request: web.Request) -> str:
    """The gateway's public origin: configured, or (development) this request's. Raises
    BadRequest for a malformed Host header when none is configured."""
    configured = request.app[CONFIG].public_url
    return configured.rstrip("/") if configured else str(_as_received(request).origin())


def request_url(request: web.Request) -> URL:
    """This request's URL as the client addressed it (DPoP ``htu``): under the configured
    public origin, or (development) as received. Raises BadRequest for a malformed Host
    header when no public origin is configured."""
    configured = request.app[CONFIG].public_url
    if configured:
        return URL(configured.rstrip("/") + request.rel_url.path)
    return _as_received(request)


def authenticate(request: web.Request) -> Principal:
    """The caller of a protected endpoint (DPoP-bound attestation). Raises 401, or 503 when
    a shared replay cache (Redis) could not be asked."""
    outcome = request.get(_AUTHENTICATED)
    if outcome is None:
        auth = request.app[AUTHORITY]
        principal: Principal = auth.authenticate(
            request.method,
            request_url(request),
            request.headers,
            request.headers.getall("DPoP", []),
            origin(request),
        )
    elif isinstance(outcome, GatewayError):
        raise outcome
    else:
        principal = outcome
    request[PRINCIPAL] = principal
    return principal


#: The outcome of authenticating this request ahead of its handler (shared_auth_middleware).
_AUTHENTICATED: web.RequestKey[Principal | GatewayError] = web.RequestKey("authenticated")


@web.middleware
async def shared_auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """With a replay cache shared by the replicas (Redis), whose check is awaited, while
    handlers call :func:`authenticate` synchronously: a request that carries an
    Authorization header is authenticated here first, its proof spent atomically across
    replicas, and the outcome, a Principal or the error, is what ``authenticate`` then
    returns or raises. A handler that never authenticates never sees the outcome, so
    errors still surface where and when they did. Without Redis this middleware is not
    installed and ``authenticate`` spends the proof in process, as before."""
    if "Authorization" in request.headers:
        auth = request.app[AUTHORITY]
        try:
            request[_AUTHENTICATED] = await auth.authenticate_shared(
                request.method,
                request_url(request),
                request.headers,
                request.headers.getall("DPoP", []),
                origin(request),
            )
        except GatewayError as e:
            request[_AUTHENTICATED] = e
    return await handler(request)


def token_request_proof(request: web.Request, auth: Authority, now: int) -> DPoPProof:
    """The DPoP proof of a token request (there is no access token yet). A missing or stale
    nonce raises OAuthError ``use_dpop_nonce`` carrying a fresh one (RFC 9449 8); any other
    fault raises DPoPError, which each grant answers in its own way."""
    try:
        return check_proof(
            request.headers.getall("DPoP", []),
            method="POST",
            url=request_url(request),
            now=now,
            window=auth.dpop_window,
            skew=auth.skew,
            nonces=auth.nonces,
        )
    except UseNonce as e:
        nonce = {"DPoP-Nonce": e.headers["DPoP-Nonce"]}
        raise OAuthError("use_dpop_nonce", e.detail or e.title, headers=nonce) from e


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, or 413 once it passes ``limit`` bytes (declared or sent).

    ``StreamReader.read(n)`` returns what has arrived, up to n: a body split across TCP
    segments needs a loop, or a valid request is cut short.
    """
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body larger than {limit} bytes")
    chunks, size = [], 0
    while chunk := await request.content.read(limit + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body larger than {limit} bytes")
    return b"".join(chunks)


async def read_json(request: web.Request) -> Any:
    """The JSON body, through the gateway's bounded decoder. Raises UnsupportedMediaType,
    PayloadTooLarge, or InvalidJSON (400) for malformed, too deep or out-of-range JSON."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType("send application/json")
    return loads(await read_body(request, MAX_JSON), "the body")


async def _record(request: web.Request, event: Event) -> Receipt:
    return await record(request.app, event)


# -- discovery ----------------------------------------------------------------------
async def jwks(request: web.Request) -> web.Response:
    auth = request.app[AUTHORITY]
    resp = web.json_response(auth.keys.jwks(auth.now()), content_type="application/jwk-set+json")
    resp.headers["Cache-Control"] = "public, max-age=60"
    return resp


async def smart_configuration(request: web.Request) -> web.Response:
    base = origin(request)
    scopes = sorted({s for v in ROLE_SCOPES.values() for s in v})
    return web.json_response(
        {
            "issuer": base,
            "jwks_uri": f"{base}/.well-known/jwks.json",
            "token_endpoint": f"{base}/oauth/token",
            "introspection_endpoint": f"{base}/oauth/introspect",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
            "dpop_signing_alg_values_supported": list(ALGORITHMS),
            "scopes_supported": scopes,
            # SMART v2 scopes (and v1's .read) for the FHIR API: gateway.auth.smart.
            "capabilities": [
                "client-confidential-asymmetric",
                "permission-v1",
                "permission-v2",
                "permission-patient",
                "permission-user",
            ],
        }
    )


# -- invites and enrollment -----------------------------------------------------------
async def create_invite(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("admin", "provider", "patient", scope="enroll")
    body = await read_json(request)
    role, attrs = check_invite_request(p.role, body)
    auth = request.app[AUTHORITY]
    if "patient" in attrs:
        patient = await asyncio.to_thread(auth.store.subject, attrs["patient"])
        if patient is None or patient.role != "patient" or patient.revoked is not None:
            raise BadRequest("no enrolled patient with that id")
    ttl = invite_ttl(body, request.app[CONFIG].invite_max_ttl)
    if role == "device":
        # A device writes into its patient's record: registering one is an access to the
        # patient, so it takes the patient themself or their `devices` consent (recorded
        # as consent.used / consent.refused), checked last so a bad request records nothing.
        await request.app[CONSENT_GUARD].authorize(p, attrs["patient"], "devices", "treatment")
    now = auth.now()
    code = new_code()
    invite = Invite(role, p.sub, now, now + ttl, attrs)
    await asyncio.to_thread(auth.store.create_invite, hash_code(code), invite)
    data: dict[str, Any] = {"role": role, "invite": hash_code(code)[:16], "expires": now + ttl}
    if "patient" in attrs:
        data["patient"] = attrs["patient"]
    receipt = await _record(
        request,
        event(
            request.app, EventType.INVITE_CREATED, p.sub, subject=attrs.get("patient"), data=data
        ),
    )
    return web.json_response(
        {
            "invite": code,
            "role": role,
            "expires": now + ttl,
            "enroll_endpoint": f"{origin(request)}/v1/enroll",
            "receipt": receipt.to_json(),
        },
        status=201,
    )


def invite_ttl(body: dict[str, Any], max_ttl: int) -> int:
    """An invite's lifetime in seconds, 60..``max_ttl`` (a day unless asked). Raises
    BadRequest."""
    ttl = body.get("ttl", 86400)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 60 <= ttl <= max_ttl:
        raise BadRequest(f"ttl must be 60..{max_ttl} seconds")
    return ttl


def check_enrollment(body: Any) -> tuple[str, HolderKey]:
    """The invite code and holder key of ``POST /v1/enroll``, checked before any lookup.
    Raises BadRequest, InvalidKey, or InvalidInvite for a code no invite can have."""
    if not isinstance(body, dict) or not isinstance(body.get("invite"), str):
        raise BadRequest("send the invite code and your public JWK")
    key = HolderKey.from_jwk(body.get("jwk"))
    code = body["invite"]
    if len(code) > 128:
        raise InvalidInvite()
    return code, key


async def _inviter(auth: Authority, invite: Invite) -> Party:
    """Who made ``invite``, as they stand now. An invite carries its maker's authority:
    once the maker is revoked it is void (InvalidInvite). A local bootstrap invite
    (``cli:local``) has no enrolled maker and no role."""
    if not is_subject_id(invite.created_by):
        return Party(invite.created_by, "local")
    s = await asyncio.to_thread(auth.store.subject, invite.created_by)
    if s is None or s.revoked is not None or s.id in auth.revoked_subjects:
        raise InvalidInvite()
    return Party(s.id, s.role)


async def enroll(request: web.Request) -> web.Response:
    body = await read_json(request)
    code, key = check_enrollment(body)
    auth = request.app[AUTHORITY]
    now = auth.now()
    # Check everything the enrollment needs before spending the invite, so a malformed
    # request does not burn it; then redeem atomically.
    pending = await asyncio.to_thread(auth.store.peek_invite, hash_code(code), now)
    if pending is None:
        # One problem type for unknown, used and expired: no oracle for guessing codes.
        raise InvalidInvite()
    attrs = dict(pending.attrs)
    if pending.role == "device":
        attrs.update(check_device_fields(body))
        provenance = request.app.get(DEVICE_PROVENANCE)
        unit = await provenance(body.get("udi"), key.jkt) if provenance is not None else None
        if unit is not None:
            attrs["udi"] = unit
    if "display_name" in body:
        # Only when the invite names nobody, and never a device (its model names it):
        # committed on the ledger below exactly like an invite-carried name.
        if "display_name" in attrs or pending.role == "device":
            raise BadRequest("this invite already says who you are: send no display_name")
        attrs["display_name"] = check_display_name(body["display_name"])
    if await asyncio.to_thread(auth.store.subject_by_jkt, key.jkt) is not None:
        raise Conflict("this key is already enrolled")
    inviter = await _inviter(auth, pending)
    decision = None
    if pending.role == "device":
        # The consent that allowed the invite must still stand when the device takes it
        # up: a revocation or expiry in between stops the enrollment (the invite stays
        # unspent, and works again if the patient consents again). The use was recorded
        # when the invite was made; a refusal now is recorded as any other.
        patient = str(pending.attrs["patient"])
        target = await asyncio.to_thread(auth.store.subject, patient)
        if target is None or target.revoked is not None or patient in auth.revoked_subjects:
            raise InvalidInvite()  # no device reports for a patient who has left
        decision = await request.app[CONSENT_GUARD].authorize(
            inviter, patient, "devices", "treatment", record_use=False
        )
    invite = await asyncio.to_thread(auth.store.redeem_invite, hash_code(code), now)
    if invite is None:
        raise InvalidInvite()
    data: dict[str, Any] = {"role": invite.role, "jkt": key.jkt, "invited_by": invite.created_by}
    if decision is not None and decision.ref is not None:
        data["consent"] = decision.ref
    # Off-ledger values get a salted commitment on the ledger; the salt stays here.
    for field in ("npi", "serial", "display_name", "udi"):
        if field in attrs:
            salt = new_salt()
            attrs[f"{field}_salt"] = salt.hex()
            data[f"{field}_commitment"] = commit(salt, str(attrs[field]))
    sid = new_subject_id(invite.role)
    subject = Subject(sid, invite.role, key.jkt, key.jwk, now, None, attrs.get("patient"), attrs)
    try:
        await asyncio.to_thread(auth.store.add_subject, subject)
    except Exception as e:  # sqlite3.IntegrityError on a duplicate id (2^-128) or key
        raise Conflict("could not enroll this key") from e
    if subject.patient:
        data["patient"] = subject.patient
    if invite.role == "party":
        # An organization's GS1 identity is public (no PHI): verifiers of custody read it.
        data["gln"], data["kind"] = attrs["gln"], attrs["kind"]
    receipt = await _record(
        request,
        event(
            request.app, EventType.IDENTITY_ENROLLED, sid, subject=subject.patient or sid, data=data
        ),
    )
    base = origin(request)
    return web.json_response(
        {
            "sub": sid,
            "client_id": sid,
            "role": invite.role,
            "display_name": attrs.get("display_name"),
            "jkt": key.jkt,
            "token_endpoint": f"{base}/oauth/token",
            "receipt": receipt.to_json(),
        },
        status=201,
    )


async def enroll_check(request: web.Request) -> web.Response:
    """What the enrollment page must ask before redeeming ``invite`` (nothing is spent):
    ``{"asks": ["display_name"]}`` unless the invite names its holder or enrolls a device.
    An unknown, used or expired code gets enrollment's one invalid-invite problem: nothing
    about the invite (role, inviter, name) is said to anyone without a live code."""
    body = await read_json(request)
    code = body.get("invite") if isinstance(body, dict) else None
    if not isinstance(code, str):
        raise BadRequest("send the invite code")
    auth = request.app[AUTHORITY]
    pending = (
        await asyncio.to_thread(auth.store.peek_invite, hash_code(code), auth.now())
        if len(code) <= 128
        else None
    )
    if pending is None:
        raise InvalidInvite()
    named = "display_name" in pending.attrs or pending.role == "device"
    return web.json_response({"asks": [] if named else ["display_name"]})


# -- the token endpoint ------------------------------------------------------------------
async def read_form(request: web.Request) -> dict[str, str]:
    """A token endpoint form: each parameter once, bounded. Raises OAuthError."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "send application/x-www-form-urlencoded")
    # Bounded like a JSON body (413 past the limit, declared or only seen while reading),
    # then parsed as aiohttp's request.post() would, which reads up to client_max_size.
    return parse_form(await read_body(request, MAX_JSON), request.charset)


def parse_form(raw: bytes, charset: str | None) -> dict[str, str]:
    """The parameters of a form body in ``charset`` (UTF-8 unless said), each once.
    Raises OAuthError ``invalid_request``."""
    try:
        text = raw.rstrip().decode(charset or "utf-8")
        pairs = parse_qsl(text, keep_blank_values=True)
    except (LookupError, ValueError) as e:  # an unknown charset, or bytes not in it
        raise OAuthError("invalid_request", "malformed form") from e
    out: dict[str, str] = {}
    for k, v in pairs:
        if k in out:
            raise OAuthError("invalid_request", f"malformed parameter {k!r}")
        out[k] = v
    return out


def assertion_issuer(assertion: str) -> tuple[str | None, str]:
    """Who a client assertion claims is calling (``iss``, None unless a short string) and
    its header's ``alg``, before any signature check: only to find their key. Raises
    OAuthError ``invalid_client``."""
    # A compact JWS is ASCII (base64url and dots): anything else is refused here, before
    # PyJWT encodes it (a lone surrogate would raise UnicodeEncodeError there).
    if len(assertion) > 8192 or not assertion.isascii() or assertion.count(".") != 2:
        raise OAuthError("invalid_client", "malformed client assertion", 401)
    try:
        header = unverified_part(assertion, 0)
        claims = unverified_part(assertion, 1, limit=4096)
    except InvalidKey as e:
        raise OAuthError("invalid_client", "malformed client assertion", 401) from e
    iss = claims.get("iss")
    return (iss if isinstance(iss, str) and len(iss) < 64 else None), str(header.get("alg"))


def _client_subject(auth: Authority, assertion: str) -> tuple[Subject, str]:
    iss, alg = assertion_issuer(assertion)
    subject = auth.store.subject(iss) if iss is not None else None
    if subject is None:
        raise OAuthError("invalid_client", "unknown client", 401)
    return subject, alg


def decode_assertion(
    assertion: str,
    key: HolderKey,
    endpoint: str,
    client: str,
    form_client: str,
    now: int,
    skew: int,
) -> tuple[str, int]:
    """RFC 7523 3: a client assertion signed by ``key`` for ``endpoint``, by and about
    ``client``, valid at ``now`` and for at most 5 minutes. Returns its ``jti`` and ``exp``
    (the single use is spent by the caller). Raises OAuthError ``invalid_client``."""
    try:
        claims = jwt.decode(
            assertion,
            key.key,
            algorithms=[key.alg],
            audience=endpoint,
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "require": ["iss", "sub", "aud", "exp", "jti"],
            },
        )
    except jwt.PyJWTError as e:
        raise OAuthError("invalid_client", f"client assertion rejected: {e}", 401) from e
    exp, jti, nbf = claims["exp"], claims["jti"], claims.get("nbf")
    # RFC 7523 3 (5): not before nbf (PyJWT's own time checks are off: time is injected).
    if nbf is not None and (not isinstance(nbf, int) or nbf > now + skew):
        raise OAuthError("invalid_client", "client assertion is not valid yet", 401)
    if claims["sub"] != client or form_client != client:
        raise OAuthError("invalid_client", "iss, sub and client_id must be the client id", 401)
    if not isinstance(exp, int) or exp <= now - skew:
        raise OAuthError("invalid_client", "client assertion has expired", 401)
    if exp > now + MAX_ASSERTION_LIFETIME + skew:
        raise OAuthError("invalid_client", "client assertion lives longer than 5 minutes", 401)
    if not isinstance(jti, str) or not 8 <= len(jti) <= 256:
        raise OAuthError("invalid_client", "client assertion jti is malformed", 401)
    return jti, exp


async def token(request: web.Request) -> web.Response:
    auth = request.app[AUTHORITY]
    form = await read_form(request)
    exchange = request.app.get(TOKEN_EXCHANGE)
    if form.get("grant_type") == TOKEN_EXCHANGE_GRANT and exchange is not None:
        return await exchange(request, form)
    if form.get("grant_type") != "client_credentials":
        grants = "client_credentials" + (" and token exchange" if exchange else "")
        raise OAuthError("unsupported_grant_type", f"only {grants} is supported")
    audience = _resource(request, form.get("resource"))
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise OAuthError("invalid_client", "use private_key_jwt client authentication", 401)
    assertion = form.get("client_assertion", "")
    now = auth.now()
    try:
        proof = token_request_proof(request, auth, now)
    except DPoPError as e:
        raise OAuthError("invalid_dpop_proof", e.detail or e.title) from e
    subject, alg = await asyncio.to_thread(_client_subject, auth, assertion)
    if subject.patient is not None and subject.patient in auth.revoked_subjects:
        # A device acts only for its patient: once they are revoked it has nothing to do.
        raise OAuthError("invalid_client", "the patient of this device has been revoked", 401)
    if subject.revoked is not None or subject.id in auth.revoked_subjects:
        raise OAuthError("invalid_client", "this identity has been revoked", 401)
    if "federation" in subject.attrs:
        # A peer's provider holds no client credential here: each token is exchanged for a
        # fresh one of its own organization, with its receipt (docs/federation.md).
        raise OAuthError("invalid_client", "a peer's identity gets tokens by token exchange", 401)
    key = HolderKey.from_jwk(subject.jwk)
    if alg != key.alg:
        raise OAuthError("invalid_client", "client assertion algorithm does not match the key", 401)
    endpoint = f"{origin(request)}/oauth/token"
    jti, exp = decode_assertion(
        assertion, key, endpoint, subject.id, form.get("client_id", subject.id), now, auth.skew
    )
    spent = assertion_key(subject.id, jti)
    if not await asyncio.to_thread(auth.store.use_client_jti, spent, exp, now):
        raise OAuthError("invalid_client", "client assertion was already used", 401)
    # The client has proven its key with a fresh, single-use assertion: from here on its
    # refusals are its own ledger events, not anonymous counts.
    request[CALLER] = subject.id
    if not await auth.spend_async(proof, now):
        raise OAuthError("invalid_dpop_proof", "DPoP proof replayed")
    allowed = frozenset(ROLE_SCOPES[subject.role])
    asked = frozenset(form.get("scope", "").split()) or allowed
    # What the role allows of what was asked (SMART App Launch v2, "Scopes": a server may
    # grant fewer; RFC 6749 3.3: the answer's ``scope`` then says which). Nothing of it
    # allowed is a refusal: a token that can do nothing asked of it helps no one.
    granted = asked & allowed
    if not granted:
        raise OAuthError(
            "invalid_scope", f"a {subject.role} may ask for {' '.join(sorted(allowed))}"
        )
    access, tclaims, _ = await auth.issue(
        subject,
        granted,
        proof.jkt,
        origin(request),
        lambda ev: _record(request, ev),
        assertion=spent,
        audience=audience,
    )
    resp = web.json_response(
        {
            "access_token": access,
            "token_type": "DPoP",
            "expires_in": tclaims["exp"] - now,
            "scope": tclaims["scope"],
        }
    )
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _resource(request: web.Request, resource: str | None) -> tuple[str, ...]:
    """RFC 8707 2: the one resource a token is also for, a peer organization of the trust
    list (its issuer); this gateway's own origin adds nothing. Raises invalid_target."""
    if resource is None or resource.rstrip("/") == origin(request):
        return ()
    if resource in request.app.get(PEER_AUDIENCES, frozenset()):
        return (resource,)
    raise OAuthError("invalid_target", "resource is not a peer organization of this gateway")


# -- receipts, introspection, status, revocation ---------------------------------------
async def attestation_receipt(request: web.Request) -> web.Response:
    p = authenticate(request)
    auth = request.app[AUTHORITY]
    jti = request.match_info["jti"]
    rec = await asyncio.to_thread(auth.store.token, jti) if len(jti) <= 64 else None
    # Same answer for "no such token" and "not yours": no oracle over token ids.
    if rec is None or (rec.sub != p.sub and p.role not in ("admin", "auditor")):
        raise NotFound("no attestation with that id for this caller")
    # Proved against the newest checkpoint: as valid as the one issued with the token, and
    # it shows the issuance still stands in the log as it is now.
    ledger, i = request.app[LOG], rec.ledger_index
    receipt = await asyncio.to_thread(ledger.receipt_for, i)
    (entry,) = await asyncio.to_thread(ledger.store.read_entries, i, i + 1)
    # The leaf itself: what a peer organization checks names this token (docs/federation.md).
    return web.json_response(
        {
            "jti": rec.jti,
            "sub": rec.sub,
            "receipt": receipt.to_json(),
            "entry": base64.b64encode(entry).decode(),
        }
    )


async def introspect(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("admin", "auditor", scope="introspect")
    auth = request.app[AUTHORITY]
    if request.content_type != "application/x-www-form-urlencoded":
        # Not the token endpoint: no RFC 6749 error to answer with, an HTTP one instead.
        raise UnsupportedMediaType("send application/x-www-form-urlencoded")
    form = await read_form(request)
    try:
        claims = auth.verify_token(form.get("token", ""), origin(request))
    except Unauthorized:
        return web.json_response({"active": False})
    claims["active"] = True
    claims["token_type"] = "DPoP"  # noqa: S105 (a token type, not a secret)
    return web.json_response(claims)


async def status_list(request: web.Request) -> web.Response:
    if request.match_info["list"] != STATUS_LIST_ID:
        raise NotFound("no such status list")
    auth = request.app[AUTHORITY]
    resp = web.Response(
        text=auth.status_list_token(origin(request)), content_type="application/statuslist+jwt"
    )
    resp.headers["Cache-Control"] = "max-age=1"
    return resp


async def revoke(request: web.Request) -> web.Response:
    p = authenticate(request)
    p.require("admin", scope="revoke")
    body = await read_json(request)
    auth = request.app[AUTHORITY]
    reason = check_revocation(body)
    now = auth.now()
    if "jti" in body:
        target = body["jti"]
        idx = await asyncio.to_thread(auth.store.revoke_token, str(target)[:64], now)
        if idx is None:
            raise NotFound("no live attestation with that id")
        indexes = [idx]
        subject = None
    else:
        target = body["sub"]
        s = await asyncio.to_thread(auth.store.subject, str(target)[:64])
        if s is None:
            raise NotFound("no such subject")
        indexes = await asyncio.to_thread(auth.store.revoke_subject, s.id, now)
        # Its devices with it: they act only for their patient. One set, read by
        # verify_token, so every endpoint and introspection refuse them alike.
        auth.revoked_subjects.update([s.id, *await asyncio.to_thread(auth.store.devices, s.id)])
        subject = s.id
    for i in indexes:
        auth.status.set(i)
    data = {
        "target": "token" if "jti" in body else "subject",
        "reason": reason,
        "status_idx": indexes,
    }
    if "jti" in body:
        data["jti"] = target
    receipt = await _record(
        request,
        event(request.app, EventType.ATTESTATION_REVOKED, p.sub, subject=subject, data=data),
    )
    # Refused from now on at every request; live sockets opened with it end now.
    news = (
        Invalidation(Kind.TOKEN, jti=str(target)[:64], reason=reason)
        if subject is None
        else Invalidation(Kind.SUBJECT, sub=subject, reason=reason)
    )
    await request.app[INVALIDATIONS].publish(news)
    return web.json_response({"revoked": indexes, "receipt": receipt.to_json()})


def check_revocation(body: Any) -> str:
    """``POST /v1/revocations``: exactly one of ``jti`` and ``sub``; returns the reason, a
    short code (an identifier of 1-64 characters). Raises BadRequest."""
    if not isinstance(body, dict) or ("jti" in body) == ("sub" in body):
        raise BadRequest("name exactly one of jti or sub")
    reason = body.get("reason")
    if not isinstance(reason, str) or not 1 <= len(reason) <= 64 or not reason.isidentifier():
        raise BadRequest("reason must be a short code such as key_compromise")
    return reason


async def me(request: web.Request) -> web.Response:
    p = authenticate(request)
    return web.json_response(
        {"sub": p.sub, "role": p.role, "scope": sorted(p.scope), "jti": p.jti, "jkt": p.jkt}
    )


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/.well-known/jwks.json", jwks)
    r.add_get("/.well-known/smart-configuration", smart_configuration)
    r.add_post("/v1/invites", create_invite)
    r.add_post("/v1/enroll", enroll)
    r.add_post("/v1/enroll/check", enroll_check)
    r.add_post("/oauth/token", token)
    r.add_post("/oauth/introspect", introspect)
    r.add_get("/v1/attestations/{jti}/receipt", attestation_receipt)
    r.add_get("/v1/status/{list}", status_list)
    r.add_post("/v1/revocations", revoke)
    r.add_get("/v1/me", me)
