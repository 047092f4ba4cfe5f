from __future__ import annotations

from typing import Any

import pytest

from gateway.config import Config
from tests.gateway.vitals.world import World


@pytest.fixture
async def world(client: Any, config: Config) -> World:
    return await World(client).setup(config)
