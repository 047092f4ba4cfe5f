"""Browser pages and their assets: served from web/ with a strict CSP, nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

Client = TestClient[Any, Any]


@pytest.mark.parametrize(
    "path",
    [
        "/web/js/../../pyproject.toml",
        "/web/js/%2e%2e%2fpyproject.toml",
        "/web/keys/log.key",
        "/web/js/.hidden.js",
        "/web/js/missing.js",
        "/web/js/README.md",
    ],
)
async def test_nothing_outside_the_asset_folders_is_served(client: Client, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 404
    assert "pyproject" not in await resp.text()
