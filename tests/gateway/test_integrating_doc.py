"""docs/integrating.md's examples run as written, in order, against a live gateway: an
integrator who copies them enrolls, gets a DPoP-bound token and makes a request. Its tables
say the limits the code enforces."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from gateway.auth.http import MAX_ASSERTION_LIFETIME
from gateway.config import Config
from tests.gateway.idclient import local_invite

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "integrating.md"


def _examples() -> str:
    return "\n".join(re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S))


def test_the_guide_examples_run_against_a_live_gateway(live_gateway: Any) -> None:
    code = _examples()
    assert code.count("def ") >= 2 and "httpx.post" in code
    invite = local_invite(live_gateway.data_dir, role="auditor")
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TELEGATE_URL": live_gateway.url, "TELEGATE_INVITE": invite},
        check=False,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    me = json.loads(out.stdout.strip().splitlines()[-1])
    assert me["role"] == "auditor" and me["sub"].startswith("aud:")


def test_the_guide_states_the_limits_the_gateway_enforces() -> None:
    text = DOC.read_text()
    defaults = Config(data_dir=Path("unused"))
    assert MAX_ASSERTION_LIFETIME == 300 and "at most 5 minutes" in text
    assert f"({defaults.dpop_window} s by default)" in text
    assert f"{defaults.clock_skew} s by default" in text
    assert f"{defaults.token_lifetime} by default" in text
    for setting in ("TELEGATE_DPOP_WINDOW", "TELEGATE_CLOCK_SKEW", "TELEGATE_TOKEN_LIFETIME"):
        assert setting in text
