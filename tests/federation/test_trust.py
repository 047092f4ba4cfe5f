"""The trust list file: what it accepts, and a clear error for each mistake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.auth.jwk import b64u
from gateway.config import Config
from gateway.errors import ConfigError
from gateway.federation import load_trust_list
from ledger.checkpoint import CosignatureSigner
from ledger.note import Signer

LOG = Signer.generate("b.example/telegate/log").vkey
W1 = CosignatureSigner(Signer.generate("w1.example/witness")).vkey
W2 = CosignatureSigner(Signer.generate("w2.example/witness")).vkey
KEY = {"kty": "OKP", "crv": "Ed25519", "x": b64u(bytes(range(32))), "kid": "k1"}


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        items = (f"{k} = {_toml(v)}" for k, v in value.items() if v is not None)
        return "{ " + ", ".join(items) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def write(tmp_path: Path, **peer: Any) -> Path:
    fields = {
        "name": "clinic-b",
        "issuer": "https://gw.clinic-b.example",
        "log_vkey": LOG,
        "witnesses": [W1, W2],
        "jwks": {"keys": [KEY]},
    }
    fields.update(peer)
    body = "".join(f"{k} = {_toml(v)}\n" for k, v in fields.items() if v is not None)
    path = tmp_path / "trust.toml"
    path.write_text("[[peers]]\n" + body)
    return path


def test_a_peer_with_defaults(tmp_path: Path) -> None:
    (peer,) = load_trust_list(write(tmp_path)).peers
    assert peer.min_witnesses == 2  # all of them unless told
    assert peer.ledger_url == "https://gw.clinic-b.example/ledger"
    assert peer.origin == "b.example/telegate/log" and not peer.tofu
    assert [(k.kid, k.alg) for k in peer.keys] == [("k1", "EdDSA")]


def test_keys_from_a_file_or_on_first_use(tmp_path: Path) -> None:
    (tmp_path / "b.jwks.json").write_text(json.dumps({"keys": [KEY]}))
    path = write(tmp_path, jwks=None, jwks_file="b.jwks.json", min_witnesses=1)
    assert load_trust_list(path).peers[0].keys[0].kid == "k1"
    peer = load_trust_list(write(tmp_path, jwks=None, jwks_tofu=True)).peers[0]
    assert peer.tofu and peer.keys == ()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"issuer": None}, "issuer and log_vkey are required"),
        ({"issuer": "https://gw.clinic-b.example/"}, "write it as 'https://gw.clinic-b.example'"),
        ({"issuer": "https://gw.clinic-b.example/oauth"}, "no path, query or fragment"),
        ({"issuer": "ftp://gw.clinic-b.example"}, "an http(s) origin"),
        ({"log_vkey": W1}, "log_vkey is not an Ed25519 (0x01) note key"),
        ({"log_vkey": "nonsense"}, "malformed verifier key"),
        ({"witnesses": [W1, LOG]}, "witnesses are cosignature/v1 (0x04) vkeys"),
        ({"witnesses": [W1, W1]}, "each witness may appear once"),
        ({"witnesses": []}, "min_witnesses must be 1..0"),
        ({"min_witnesses": 3}, "min_witnesses must be 1..2"),
        ({"min_witnesses": 0}, "min_witnesses must be 1..2"),
        ({"jwks": None}, "exactly one of jwks, jwks_file and jwks_tofu"),
        ({"jwks_tofu": True}, "exactly one of jwks, jwks_file and jwks_tofu"),
        ({"jwks": None, "jwks_tofu": False}, "jwks_tofu is true or absent"),
        ({"jwks": None, "jwks_file": "missing.json"}, "cannot read jwks_file"),
        ({"jwks": {"keys": [{**KEY, "kid": None}]}}, "every key needs a kid"),
        ({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}}, "key 'h'"),
        ({"jwks": {"keys": [{**KEY, "alg": "ES256"}]}}, "is used with EdDSA only"),
        ({"jwks": {"keys": [KEY, KEY]}}, "kid 'k1' appears twice"),
        ({"jwks": {"keys": []}}, "at least one key"),
        ({"name": "clinic b"}, "a peer name is 1-64 printable characters"),
        ({"colour": "blue"}, "unknown settings: colour"),
        ({"ledger_url": "gw.clinic-b.example/ledger"}, "ledger_url must be an http(s) URL"),
    ],
)
def test_each_mistake_is_named(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    path = write(tmp_path, **change)  # None: the setting left out
    with pytest.raises(ConfigError) as e:
        load_trust_list(path)
    assert message in str(e.value) and str(path) in str(e.value)


@pytest.mark.parametrize(
    ("name", "issuer", "log", "what"),
    [
        ("clinic-b", "https://gw.clinic-c.example", "c", "name"),
        ("clinic-c", "https://gw.clinic-b.example", "c", "issuer"),
        ("clinic-c", "https://gw.clinic-c.example", None, "log_vkey"),
    ],
)
def test_each_peer_once(tmp_path: Path, name: str, issuer: str, log: str | None, what: str) -> None:
    one = write(tmp_path).read_text()
    vkey = Signer.generate("c.example/log").vkey if log else LOG
    two = write(tmp_path, name=name, issuer=issuer, log_vkey=vkey).read_text()
    (tmp_path / "trust.toml").write_text(one + two)
    with pytest.raises(ConfigError, match=f"each peer {what} may appear once"):
        load_trust_list(tmp_path / "trust.toml")


def test_a_gateway_with_a_trust_list_needs_its_public_url(tmp_path: Path) -> None:
    path = write(tmp_path)
    with pytest.raises(ConfigError, match="trust_file needs public_url"):
        create_app(Config(data_dir=tmp_path / "d", trust_file=str(path)))
    with pytest.raises(ConfigError, match="lists this gateway itself"):
        create_app(
            Config(
                data_dir=tmp_path / "d",
                trust_file=str(path),
                public_url="https://gw.clinic-b.example",
            )
        )
    assert Config.load({"TELEGATE_TRUST_FILE": str(path)}).trust_file == str(path)
