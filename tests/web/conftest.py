"""Real Chromium (Debian's, driven by Playwright) against a real gateway subprocess.

Never ``playwright install``: the browser is ``chromium`` from the system. Without it these
tests skip locally and fail in CI (``need``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need
from tests.gateway.conftest import LiveGateway
from tests.pgschema import answers, fresh_schema

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    # Both browsers of a call run on this machine: let WebRTC use loopback addresses too.
    "--allow-loopback-in-peer-connection",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    exe = shutil.which("chromium")
    need(exe is not None, "Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    """One gateway for the module's tests: each test enrolls its own auditor. With
    ``TELEGATE_TEST_DATABASE_URL`` set (the PostgreSQL pass of ``make test``) its stores
    live in a fresh schema of that database."""
    with contextlib.ExitStack() as stack:
        base = os.environ.get("TELEGATE_TEST_DATABASE_URL")
        url = None
        if base:
            need(answers(base), f"PostgreSQL at TELEGATE_TEST_DATABASE_URL={base}")
            url = stack.enter_context(fresh_schema(base))
        gw = LiveGateway(tmp_path_factory.mktemp("gateway") / "data", url)
        try:
            yield gw
        finally:
            gw.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots of the pages go (look at them)."""
    return tmp_path_factory.mktemp("screenshots")
