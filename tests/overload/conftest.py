"""A real gateway served as ``telegate serve`` serves it (AppRunner with the limits'
server arguments) on a free loopback port, with the limits a test sets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.config import Config
from gateway.limits import Runner, server_args

#: Upper bound on any wait in these tests: only there so that a broken limit fails the
#: test instead of hanging it; nothing is timed against it.
HANG = 30.0


class Served:
    def __init__(self, config: Config, runner: web.AppRunner, port: int) -> None:
        self.config = config
        self.runner = runner
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.session = aiohttp.ClientSession()

    @property
    def app(self) -> web.Application:
        return self.runner.app

    def make_url(self, path: str) -> Any:
        from yarl import URL

        return URL(self.base + path)

    async def request(self, method: str, path: str, **kw: Any) -> aiohttp.ClientResponse:
        return await self.session.request(method, self.base + path, **kw)

    async def get(self, path: str, **kw: Any) -> aiohttp.ClientResponse:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> aiohttp.ClientResponse:
        return await self.request("POST", path, **kw)

    async def metric(self, name: str) -> float:
        text = await (await self.get("/metrics")).text()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise KeyError(name)

    async def until_metric(self, name: str, value: float) -> None:
        async with asyncio.timeout(HANG):
            while True:
                if await self.metric(name) == value:
                    return
                await asyncio.sleep(0.02)

    def raw(self) -> socket.socket:
        """A plain TCP connection to the gateway (blocking; use from a thread)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=HANG)
        return s


Serve = Callable[..., contextlib.AbstractAsyncContextManager[Served]]


@pytest.fixture
def serve(tmp_path: Path) -> Serve:
    """``async with serve(**settings) as gw``: a gateway with those settings."""

    @contextlib.asynccontextmanager
    async def run(**settings: Any) -> AsyncIterator[Served]:
        config = Config(
            data_dir=tmp_path / "data", log_origin="test.example/telegate/log", **settings
        )
        runner = Runner(create_app(config), access_log=None, **server_args(config))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        served = Served(config, runner, runner.addresses[0][1])
        try:
            yield served
        finally:
            await served.session.close()
            await runner.cleanup()

    return run
