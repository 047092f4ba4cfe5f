"""The gateway's attestation signing keys: Ed25519 (EdDSA) by default, ES256 allowed.

Keys live in ``<data_dir>/keys/signing/`` (PKCS#8 PEM, mode 0600, plus ``keys.json``).
``kid`` is the RFC 7638 thumbprint. Rotation makes a new key current; retired keys stay in
the JWKS until every token they signed has expired.

Replicas on other hosts hold *copies* of the key dir. Every ring with a publisher (the
identity store) publishes its keys' public parts in the database, and learns the keys and
retirements published by the others (``learn``): a token signed anywhere verifies here, and
a key retired elsewhere is not used to sign here (``signing_key`` raises SigningKeyRetired
until the rotated key dir is copied here).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.atomic import create_exclusive, write_atomic

from ..errors import ConfigError, Unavailable
from .jwk import HolderKey, InvalidKey, b64u
from .store import PublishedKey

__all__ = ["KeyPublisher", "KeyRing", "SigningKey", "SigningKeyRetired", "VerifyingKey"]

log = logging.getLogger("telegate.auth")

PrivateKey = Ed25519PrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    alg: str
    private: PrivateKey
    public: HolderKey
    created: int
    retired: int | None = None


@dataclass(frozen=True, slots=True)
class VerifyingKey:
    """What verifies a token: a public key, with the earliest retirement known anywhere."""

    kid: str
    alg: str
    public: HolderKey
    created: int
    retired: int | None = None


class SigningKeyRetired(Unavailable):
    """This replica's signing key was retired by a rotation on another host, and this
    host's key dir does not hold the new key yet: nothing may be signed with the old one."""

    slug = "signing-key-retired"
    title = "The signing key was rotated on another host"


class KeyPublisher(Protocol):
    """Where the keys' public parts are published (IdentityStore)."""

    def publish_signing_keys(self, keys: Sequence[PublishedKey], now: int) -> None: ...


def _published(k: SigningKey) -> PublishedKey:
    return PublishedKey(k.kid, k.alg, dict(k.public.jwk), k.created, k.retired)


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _public_jwk(key: PrivateKey) -> dict[str, str]:
    if isinstance(key, Ed25519PrivateKey):
        raw = key.public_key().public_bytes_raw()
        return {"kty": "OKP", "crv": "Ed25519", "x": b64u(raw)}
    nums = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64u(nums.x.to_bytes(32, "big")),
        "y": b64u(nums.y.to_bytes(32, "big")),
    }


def _make(private: PrivateKey, created: int, retired: int | None = None) -> SigningKey:
    pub = HolderKey.from_jwk(_public_jwk(private))
    return SigningKey(pub.jkt, pub.alg, private, pub, created, retired)


def _stamp(path: Path) -> tuple[int, int, int]:
    # keys.json is replaced atomically, so a new inode marks a change even where the
    # filesystem's timestamps are too coarse to.
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, st.st_size


#: How long a ring trusts its copy of ``keys.json`` before it looks again, in seconds.
RESCAN_EVERY = 1.0


class KeyRing:
    """Signing keys on disk, shared by every replica that shares the key dir (like the log
    key). A key rotated by any process (``telegate keys rotate``, or another replica) is
    seen here within RESCAN_EVERY seconds; rotations serialize on a lock file."""

    def __init__(self, directory: Path, *, alg: str = "EdDSA", keep_seconds: int = 3600) -> None:
        if alg not in ("EdDSA", "ES256"):
            raise ConfigError("signing algorithm must be EdDSA or ES256")
        self.dir = directory
        self.alg = alg
        self.keep_seconds = keep_seconds
        self.keys: list[SigningKey] = []
        self._stamp: tuple[int, int, int] | None = None
        self._looked: float | None = None
        self.publisher: KeyPublisher | None = None
        # Keys as other replicas published them (kid -> key), and every key that verifies
        # here, local ones with the earliest retirement known anywhere: one dict lookup a
        # verification, rebuilt when either side changes.
        self._remote: dict[str, VerifyingKey] = {}
        self._verifiers: dict[str, VerifyingKey] = {}
        # Bumped each time the local keys change; publish_pending publishes up to it.
        self._generation = 0
        self._published_generation = -1
        self._warned: str | None = None  # the retired kid signing was last refused for
        # Keys that vanished from this key dir unretired (a wholesale swap, an operator's
        # deletion): withdrawn everywhere, not just retired (see _set).
        self._withdrawn: dict[str, SigningKey] = {}

    @classmethod
    def open(
        cls,
        directory: Path,
        now: int,
        *,
        alg: str = "EdDSA",
        keep_seconds: int = 3600,
        publisher: KeyPublisher | None = None,
    ) -> KeyRing:
        """Load the ring, creating the first key if there is none; with a ``publisher``,
        publish the keys' public parts at once (raises DatabaseUnavailable)."""
        ring = cls(directory, alg=alg, keep_seconds=keep_seconds)
        ring._load()
        if not ring.keys:
            with ring._writing():
                ring._load()  # a replica starting beside this one may have made it
                if not ring.keys:
                    ring._rotate(now)
        if publisher is not None:
            ring.publisher = publisher
            ring.publish_pending(now)
        return ring

    @property
    def unpublished(self) -> bool:
        """True when the local keys changed since they were last published."""
        return self.publisher is not None and self._generation != self._published_generation

    def publish_pending(self, now: int) -> None:
        """Publish the local keys' public parts if they changed since they were last
        published (opened, rotated, re-read from disk). Blocking: Authority calls it in
        the thread of its once-a-second look. Raises DatabaseUnavailable; the keys are
        then published at the next call."""
        publisher, generation, keys = self.publisher, self._generation, self.keys
        if publisher is None or generation == self._published_generation:
            return
        rows = [_published(k) for k in keys]
        for k in list(self._withdrawn.values()):
            # Retired before it was made and longer ago than any token lives: no token it
            # signed verifies, and no JWKS lists it (where the database had no retirement
            # for it yet; a published retirement is never moved).
            rows.append(replace(_published(k), retired=min(k.created, now - self.keep_seconds) - 1))
        publisher.publish_signing_keys(rows, now)
        self._published_generation = max(self._published_generation, generation)

    def learn(self, published: Iterable[PublishedKey]) -> None:
        """Take in keys and retirements other replicas published. A row whose kid is not
        its key's RFC 7638 thumbprint, or whose key telegate does not accept, is ignored.
        A retirement, once known, stays (the earliest one wins)."""
        changed = False
        for p in published:
            try:
                public = HolderKey.from_jwk(p.jwk)
            except InvalidKey:
                continue
            if public.jkt != p.kid or public.alg != p.alg:
                continue
            had = self._remote.get(p.kid)
            retired = p.retired if had is None else _earliest(had.retired, p.retired)
            if had is None or had.retired != retired:
                self._remote[p.kid] = VerifyingKey(p.kid, p.alg, public, p.created, retired)
                changed = True
        if changed:
            self._rebuild()

    def _rebuild(self) -> None:
        verifiers = dict(self._remote)
        for k in self.keys:
            remote = self._remote.get(k.kid)
            retired = k.retired if remote is None else _earliest(k.retired, remote.retired)
            verifiers[k.kid] = VerifyingKey(k.kid, k.alg, k.public, k.created, retired)
        for kid in self._withdrawn:
            verifiers.pop(kid, None)
        self._verifiers = verifiers

    def refresh(self, now: float, *, force: bool = False) -> None:
        """Reload if ``keys.json`` changed on disk (a rotation by another process), looking
        at most once per RESCAN_EVERY of ``now`` unless ``force``d (a token names a key
        this ring does not know); one ``stat`` when nothing changed."""
        last = self._looked
        if not force and last is not None and 0 <= now - last < RESCAN_EVERY:
            return
        self._looked = now
        try:
            stamp = _stamp(self.dir / "keys.json")
        except FileNotFoundError:
            return
        if stamp != self._stamp:
            self._load()

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Exclude every other process's rotation: two replicas rotating at once would
        each write keys.json without the other's new key, and the tokens that key signed
        would verify nowhere else."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.dir / ".rotate.lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _load(self) -> None:
        index = self.dir / "keys.json"
        if not index.exists():
            return
        try:
            self._stamp = _stamp(index)
            entries = json.loads(index.read_text())
            keys = []
            for e in entries:
                pem = (self.dir / f"{e['kid']}.pem").read_bytes()
                priv = serialization.load_pem_private_key(pem, password=None)
                if not isinstance(priv, Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
                    raise ConfigError(f"signing key {e['kid']} has an unsupported type")
                key = _make(priv, int(e["created"]), e.get("retired"))
                if key.kid != e["kid"]:
                    raise ConfigError(f"signing key {e['kid']} does not match its kid")
                keys.append(key)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"cannot load signing keys from {self.dir}: {e}") from e
        self._set(keys)

    def _set(self, keys: list[SigningKey]) -> None:
        # A key this ring held unretired that is no longer in the key dir was removed on
        # purpose (a wholesale swap, a deletion): before keys were published it then
        # verified nowhere; withdrawing it keeps that so on every host. Keys leave
        # keys.json otherwise only after retirement plus keep_seconds.
        kids = {k.kid for k in keys}
        for k in self.keys:
            if k.kid not in kids and k.retired is None:
                self._withdrawn[k.kid] = k
        for kid in kids:
            self._withdrawn.pop(kid, None)
        self.keys = keys
        self._generation += 1
        self._rebuild()

    def _save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Each key file durable before keys.json names it, and keys.json durable before a
        # rotation returns (ledger.atomic): a power cut leaves the old ring or the new one.
        for k in self.keys:
            path = self.dir / f"{k.kid}.pem"
            if not path.exists():
                pem = k.private.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                if not create_exclusive(path, pem, 0o600):
                    raise FileExistsError(f"signing key file {path} appeared meanwhile")
        entries = [
            {"kid": k.kid, "alg": k.alg, "created": k.created, "retired": k.retired}
            for k in self.keys
        ]
        write_atomic(self.dir / "keys.json", json.dumps(entries, indent=1).encode())
        self._stamp = _stamp(self.dir / "keys.json")
        self._set(self.keys)

    @property
    def current(self) -> SigningKey:
        """The newest key this key dir has not retired (not looking at the database)."""
        return next(k for k in reversed(self.keys) if k.retired is None)

    def signing_key(self) -> SigningKey:
        """The key to sign with now: ``current``, unless another host's rotation retired
        it (published in the database) and this key dir has no newer key. Raises
        SigningKeyRetired (503) then, naming what to copy; logged once per retired key."""
        key = self.current
        remote = self._remote.get(key.kid)
        if remote is None or remote.retired is None:
            return key
        newer = [k for k in self._remote.values() if k.retired is None]
        new = max(newer, key=lambda k: k.created).kid if newer else "unknown"
        detail = (
            f"attestation signing key {key.kid} was retired by a key rotation on another "
            f"host, and this host's key dir does not hold the new key {new}: copy "
            "keys/signing from the host that rotated it; signing resumes within a second "
            "of its arrival"
        )
        if self._warned != key.kid:
            self._warned = key.kid
            fields = {"kid": key.kid, "new_kid": new, "key_dir": str(self.dir)}
            log.error("signing key retired elsewhere", extra={"fields": fields})
        raise SigningKeyRetired(detail, headers={"Retry-After": "30"})

    def rotate(self, now: int) -> SigningKey:
        """Make a new current key; the old one verifies until its tokens have expired.
        An opened ring starts from the keys on disk, so a key another process rotated in
        is kept (a ring made without ``open`` replaces the set: a wholesale swap). With a
        publisher, the new key and the old one's retirement are published together
        before this returns (raises DatabaseUnavailable: the files are rotated then, and
        the keys are published at the next ``publish_pending``)."""
        with self._writing():
            if self._stamp is not None:
                self._load()
            key = self._rotate(now)
            self.publish_pending(now)
            return key

    def _rotate(self, now: int) -> SigningKey:
        private: PrivateKey = (
            Ed25519PrivateKey.generate()
            if self.alg == "EdDSA"
            else ec.generate_private_key(ec.SECP256R1())
        )
        self.keys = [k if k.retired is not None else replace(k, retired=now) for k in self.keys]
        # Keys retired longer ago than any token lives are dropped for good.
        self.keys = [
            k for k in self.keys if k.retired is None or k.retired + self.keep_seconds > now
        ]
        key = _make(private, now)
        self.keys.append(key)
        self._save()
        return key

    def verification_key(self, kid: str, now: int) -> VerifyingKey | None:
        """The key ``kid`` names, from the key dir or published by another replica, if it
        still verifies at ``now``; its ``retired`` is the earliest retirement known."""
        k = self._verifiers.get(kid)
        if k is None or (k.retired is not None and k.retired + self.keep_seconds <= now):
            return None
        return k

    def jwks(self, now: int) -> dict[str, list[dict[str, str]]]:
        """The public keys that verify tokens now: this key dir's (including one rotated in
        by a process sharing it, within RESCAN_EVERY seconds) and those other replicas
        published (as of the Authority's last look, at most a second old)."""
        self.refresh(now)
        keys = []
        for k in sorted(self._verifiers.values(), key=lambda k: (k.created, k.kid)):
            if k.retired is None or k.retired + self.keep_seconds > now:
                keys.append({**k.public.jwk, "kid": k.kid, "alg": k.alg, "use": "sig"})
        return {"keys": keys}
