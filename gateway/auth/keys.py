"""The gateway's attestation signing keys: Ed25519 (EdDSA) by default, ES256 allowed.

Keys live in ``<data_dir>/keys/signing/`` (PKCS#8 PEM, mode 0600, plus ``keys.json``).
``kid`` is the RFC 7638 thumbprint. Rotation makes a new key current; retired keys stay in
the JWKS until every token they signed has expired.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..errors import ConfigError
from .jwk import HolderKey, b64u

__all__ = ["KeyRing", "SigningKey"]

PrivateKey = Ed25519PrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    alg: str
    private: PrivateKey
    public: HolderKey
    created: int
    retired: int | None = None


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

    @classmethod
    def open(
        cls, directory: Path, now: int, *, alg: str = "EdDSA", keep_seconds: int = 3600
    ) -> KeyRing:
        """Load the ring, creating the first key if there is none."""
        ring = cls(directory, alg=alg, keep_seconds=keep_seconds)
        ring._load()
        if not ring.keys:
            with ring._writing():
                ring._load()  # a replica starting beside this one may have made it
                if not ring.keys:
                    ring._rotate(now)
        return ring

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
        self.keys = keys

    def _save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for k in self.keys:
            path = self.dir / f"{k.kid}.pem"
            if not path.exists():
                pem = k.private.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(pem)
        entries = [
            {"kid": k.kid, "alg": k.alg, "created": k.created, "retired": k.retired}
            for k in self.keys
        ]
        tmp = self.dir / "keys.json.tmp"
        tmp.write_text(json.dumps(entries, indent=1))
        os.replace(tmp, self.dir / "keys.json")
        self._stamp = _stamp(self.dir / "keys.json")

    @property
    def current(self) -> SigningKey:
        return next(k for k in reversed(self.keys) if k.retired is None)

    def rotate(self, now: int) -> SigningKey:
        """Make a new current key; the old one verifies until its tokens have expired.
        An opened ring starts from the keys on disk, so a key another process rotated in
        is kept (a ring made without ``open`` replaces the set: a wholesale swap)."""
        with self._writing():
            if self._stamp is not None:
                self._load()
            return self._rotate(now)

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

    def verification_key(self, kid: str, now: int) -> SigningKey | None:
        for k in self.keys:
            if k.kid == kid and (k.retired is None or k.retired + self.keep_seconds > now):
                return k
        return None

    def jwks(self, now: int) -> dict[str, list[dict[str, str]]]:
        """The public keys that verify tokens now, including one rotated in elsewhere
        within the last RESCAN_EVERY seconds."""
        self.refresh(now)
        keys = []
        for k in self.keys:
            if k.retired is None or k.retired + self.keep_seconds > now:
                keys.append({**k.public.jwk, "kid": k.kid, "alg": k.alg, "use": "sig"})
        return {"keys": keys}
