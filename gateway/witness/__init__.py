"""A C2SP tlog-witness: cosigns the checkpoints of logs it follows, never a fork or rollback.

Run alone with ``telegate witness serve --config FILE``, or host one inside another aiohttp
application with :func:`setup`. The decisions live in :mod:`ledger.witness` (pure); this
package adds the key file, the durable state and the HTTP face.
"""

from __future__ import annotations

from .app import WITNESS, WitnessService, create_app, open_witness, setup
from .config import LogConfig, WitnessConfig
from .keys import init_witness_key, load_witness_key
from .store import WitnessDatabase, WitnessStore

__all__ = [
    "WITNESS",
    "LogConfig",
    "WitnessConfig",
    "WitnessDatabase",
    "WitnessService",
    "WitnessStore",
    "create_app",
    "init_witness_key",
    "load_witness_key",
    "open_witness",
    "setup",
]
