"""The TOML configuration file (``gateway.config.Config.load``).

Properties: a file is refused with ``ConfigError`` or gives a ``Config`` in which every
setting has the type of its default (so nothing downstream meets a float port or a
string limit) and that can be digested for the ``gateway.started`` event.
"""

from __future__ import annotations

import atexit
import os
import sys
import tempfile
from dataclasses import fields

from fuzz._harness import instrumented, main

with instrumented(__name__, "tomllib", hooks=()):
    from gateway.config import Config
    from gateway.errors import ConfigError

_FD, PATH = tempfile.mkstemp(prefix="telegate-fuzz-", suffix=".toml")
os.close(_FD)
atexit.register(os.unlink, PATH)
DEFAULTS = Config()


def check(data: bytes) -> None:
    with open(PATH, "wb") as f:
        f.write(data)
    try:
        config = Config.load({"TELEGATE_CONFIG": PATH})
    except ConfigError:
        return
    for f in fields(Config):
        assert type(getattr(config, f.name)) is type(getattr(DEFAULTS, f.name)), f.name
    config.digest()


if __name__ == "__main__":
    main(check)
    sys.exit(0)
