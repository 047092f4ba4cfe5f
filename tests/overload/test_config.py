"""The limits' settings: read from TELEGATE_* and TOML like every other, and refused
outside their safe ranges."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import Config
from gateway.errors import ConfigError
from gateway.limits import server_args


def test_limits_from_env_and_toml(tmp_path: Path) -> None:
    toml = tmp_path / "telegate.toml"
    toml.write_text("max_pending = 64\nclient_rate = 5.5\nheader_timeout = 12\n")
    c = Config.load(
        {
            "TELEGATE_CONFIG": str(toml),
            "TELEGATE_MAX_WEBSOCKETS": "50",
            "TELEGATE_RATE_EXEMPT_LOOPBACK": "yes",
        }
    )
    assert (c.max_pending, c.client_rate, c.header_timeout) == (64, 5.5, 12.0)
    assert c.max_websockets == 50 and c.rate_exempt_loopback
    assert server_args(c) == {
        "keepalive_timeout": 12.0,
        "max_line_size": 8190,
        "max_field_size": 8190,
        "max_headers": 64,
    }


def test_defaults_limit_loopback_and_leave_lag_shedding_off() -> None:
    assert not Config().rate_exempt_loopback
    assert Config().shed_lag_ms == 0


@pytest.mark.parametrize(
    "setting",
    [
        {"address_rate": 0},
        {"address_burst": 0},
        {"client_rate": -1},
        {"client_burst": 2_000_000},
        {"rate_max_keys": 10},
        {"max_pending": 0},
        {"max_websockets": 0},
        {"max_websockets": 2, "max_websockets_per_subject": 3},
        {"max_header_size": 100},
        {"max_header_size": 1 << 20},
        {"max_headers": 2},
        {"header_timeout": 0},
        {"body_timeout": 7200},
        {"send_timeout": 0.01},
        {"shed_lag_ms": 5},
    ],
    ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()),
)
def test_out_of_range_limits_are_refused(setting: dict[str, float]) -> None:
    with pytest.raises(
        ConfigError, match=next(iter(setting)) if len(setting) == 1 else "per_subject"
    ):
        Config(**setting)  # type: ignore[arg-type]


def test_env_value_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(ConfigError, match="max_pending"):
        Config.load({"TELEGATE_MAX_PENDING": "lots"})
