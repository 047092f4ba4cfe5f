"""A world for incentive tests: the vitals world (admin, provider, two patients with a
device each), programs published over the last few whole UTC days, and readings posted by
the patient's device at chosen days."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gateway.config import Config
from tests.gateway.conftest import _pg_schemas, client, config
from tests.gateway.idclient import Holder, call
from tests.gateway.vitals.world import World, batch, bp, hr

__all__ = ["_pg_schemas", "client", "config"]  # the gateway's fixtures, shared here

DAY = 86400


def day_start(days_ago: int) -> int:
    """Epoch seconds of UTC midnight ``days_ago`` days before today."""
    today = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days_ago)
    return int(dt.datetime(today.year, today.month, today.day, tzinfo=dt.UTC).timestamp())


def date_of(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).date().isoformat()


class IncentiveWorld(World):
    async def publish(
        self, rule: str, who: Holder | None = None, token: str | None = None, **over: Any
    ) -> Any:
        """Publish a program of 1-day periods starting 4 days ago (periods 0..3 are over,
        4 is today)."""
        body = {
            "name": "Heart rate every day",
            "start": date_of(day_start(4)),
            "period_days": 1,
            "periods": 6,
            "rule": rule,
            "points": 5,
            **over,
        }
        return await call(
            self.client,
            "POST",
            "/v1/programs",
            who or self.adm,
            token or self.adm_t,
            json=body,
        )

    async def program(self, rule: str, **over: Any) -> str:
        resp = await self.publish(rule, **over)
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["id"])

    async def enroll(self, pid: str, who: Holder | None = None, token: str | None = None) -> Any:
        return await call(
            self.client,
            "POST",
            f"/v1/programs/{pid}/enroll",
            who or self.pat,
            token or self.pat_t,
        )

    async def evaluate(
        self, pid: str, period: Any, who: Holder | None = None, token: str | None = None
    ) -> Any:
        return await call(
            self.client,
            "POST",
            f"/v1/programs/{pid}/evaluate",
            who or self.pat,
            token or self.pat_t,
            json={"period": period},
        )

    async def heart(self, day: int, values: list[float], start: int | None = None) -> None:
        """Post heart-rate readings in day ``day`` of the program (hours 8, 9, ...)."""
        base = (start if start is not None else day_start(4)) + day * DAY + 8 * 3600
        readings = [hr(v, base + i * 3600) for i, v in enumerate(values)]
        resp = await self.send(batch(readings))
        assert resp.status in (200, 201), await resp.text()

    async def pressure(self, day: int, sys: float, dia: float) -> None:
        resp = await self.send(batch([bp(sys, dia, day_start(4) + day * DAY + 7 * 3600)]))
        assert resp.status in (200, 201), await resp.text()


@pytest.fixture
async def world(client: Any, config: Config) -> IncentiveWorld:
    w = IncentiveWorld(client)
    await w.setup(config)
    return w
