"""The witnessing settings: env and TOML forms, the k-of-n default, refused values."""

from __future__ import annotations

import pytest

from gateway.config import Config, WitnessPeer, parse_witnesses
from gateway.errors import ConfigError
from ledger.checkpoint import CosignatureSigner
from ledger.note import Signer

W = [CosignatureSigner(Signer.generate(f"w{i}.example/witness")) for i in range(2)]


def test_witness_settings() -> None:
    a, b = (WitnessPeer(f"http://127.0.0.1:{8190 + i}", W[i].vkey) for i in range(2))
    env = {"TELEGATE_WITNESSES": f"{a.url}={a.vkey}, {b.url}={b.vkey}"}
    c = Config.load(env)
    assert c.witnesses == (a, b) and c.quorum == 2 and a.name == "w0.example/witness"
    assert Config.load({**env, "TELEGATE_WITNESS_QUORUM": "1"}).quorum == 1
    assert Config().quorum == 0
    tables = [{"url": a.url, "vkey": a.vkey}]
    assert parse_witnesses(tables) == (a,)
    assert c.digest() != Config().digest()
    bad = [
        {"TELEGATE_WITNESSES": "http://x"},  # no vkey
        {"TELEGATE_WITNESSES": f"ftp://x={a.vkey}"},
        {"TELEGATE_WITNESSES": f"http://x={Signer.generate('log').vkey}"},  # not 0x04
        {"TELEGATE_WITNESSES": f"{a.url}={a.vkey},http://other={a.vkey}"},  # twice
        {**env, "TELEGATE_WITNESS_QUORUM": "3"},
        {**env, "TELEGATE_WITNESS_QUORUM": "0"},
        {"TELEGATE_WITNESS_QUORUM": "1"},
        {**env, "TELEGATE_WITNESS_RATE": "0"},
        {**env, "TELEGATE_WITNESS_BACKOFF_MAX": "0"},
    ]
    for e in bad:
        with pytest.raises(ConfigError):
            Config.load(e)
    with pytest.raises(ConfigError):
        parse_witnesses([{"url": a.url}])
