"""``telegate device simulate`` end to end: the command (a real process) enrolls devices
from invites or a provisioning file and drives them against a live gateway for a few
seconds, over HTTP and over MQTT through a private broker; with an outage, the batches
wait in the queues and are all delivered after it, each recorded once."""

from __future__ import annotations

import asyncio
import collections
import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.appkeys import CONFIG
from tests.conftest import ROOT
from tests.devicekit.test_offline import _invite
from tests.gateway.vitals.world import World
from tests.mqtt.broker import Broker, running
from tests.mqtt.conftest import gateway_config, subscribed


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with running(tmp_path_factory.mktemp("mosquitto")) as b:
        yield b


@pytest.fixture
async def gw(aiohttp_client: Any, tmp_path: Path, broker: Broker) -> AsyncIterator[Any]:
    c = await aiohttp_client(create_app(gateway_config(tmp_path / "data", broker)))
    await subscribed(c.app)
    yield c


async def simulate(gw: Any, *args: str) -> tuple[int, dict[str, Any], str]:
    """Run the command beside the in-process gateway; (exit code, summary, stderr)."""
    url = str(gw.make_url("")).rstrip("/")
    p = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "device",
        "simulate",
        "--server",
        url,
        "--json",
        *args,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(p.communicate(), 90)
    assert p.returncode is not None
    summary = json.loads(out) if out.strip() else {}
    return p.returncode, summary, err.decode()


async def recorded(w: World) -> collections.Counter[tuple[str, str]]:
    return collections.Counter(
        (e["actor"], e["data"]["batch_id"]) for e in await w.events("vitals.batch")
    )


async def test_over_http_every_batch_sent_is_acknowledged_and_recorded_once(
    gw: Any, tmp_path: Path
) -> None:
    w = await World(gw).setup(gw.app[CONFIG])
    codes = [await _invite(gw, w.pat, w.pat_t) for _ in range(2)]
    state = tmp_path / "sim"
    rc, s, err = await simulate(
        gw, "--state-dir", str(state), "--invite", codes[0], "--invite", codes[1],
        "--rate", "2", "--duration", "3", "--seed", "1",
    )  # fmt: skip
    assert rc == 0, err
    assert s["devices"] == 2 and s["sent"] >= 8 and s["readings"] > s["sent"]
    assert (s["acknowledged"], s["queued"], s["rejected"]) == (s["sent"], 0, 0)
    got = await recorded(w)
    assert sum(got.values()) == s["sent"] and set(got.values()) == {1}
    assert len({actor for actor, _ in got}) == 2
    assert re.search(r"\] sent \d+  acknowledged \d+  queued \d+", err)  # progress
    for d in ("device-000", "device-001"):
        assert (state / d / "device.json").stat().st_mode & 0o777 == 0o600
    # The devices stay enrolled: a second run reuses them, no invite needed.
    rc, s2, err = await simulate(gw, "--state-dir", str(state), "--devices", "2",
                                 "--duration", "1", "--rate", "2")  # fmt: skip
    assert rc == 0 and s2["acknowledged"] == s2["sent"] > 0, err
    assert sum((await recorded(w)).values()) == s["sent"] + s2["sent"]


async def test_over_mqtt_from_a_provisioning_file(gw: Any, tmp_path: Path, broker: Broker) -> None:
    w = await World(gw).setup(gw.app[CONFIG])
    devices = [
        {"invite": await _invite(gw, w.pat, w.pat_t), "profile": p, "serial": f"P-{i}"}
        for i, p in enumerate(["copd", "heart-failure"])
    ]
    prov = tmp_path / "provision.json"
    prov.write_text(json.dumps({"devices": devices}))
    rc, s, err = await simulate(
        gw, "--state-dir", str(tmp_path / "sim"), "--provision", str(prov),
        "--transport", "mqtt", "--mqtt-url", broker.url, "--rate", "2", "--duration", "3",
    )  # fmt: skip
    assert rc == 0, err
    assert (s["acknowledged"], s["queued"], s["rejected"]) == (s["sent"], 0, 0) and s["sent"]
    got = await recorded(w)
    assert sum(got.values()) == s["sent"] and set(got.values()) == {1}
    # The COPD patient reports respiratory rate, the heart-failure one weight.
    r = await w.read(w.pat, w.pat_t)
    codes = {x["code"] for x in (await r.json())["readings"]}
    assert {"8867-4", "59408-5", "85354-9", "9279-1", "29463-7"} <= codes


async def test_an_outage_queues_then_delivers_everything_once(gw: Any, tmp_path: Path) -> None:
    w = await World(gw).setup(gw.app[CONFIG])
    code = await _invite(gw, w.pat, w.pat_t)
    rc, s, err = await simulate(
        gw, "--state-dir", str(tmp_path / "sim"), "--invite", code, "--rate", "4",
        "--duration", "4", "--outage", "0.5+2.5", "--profile", "hypertension",
    )  # fmt: skip
    assert rc == 0, err
    offline = [line for line in err.splitlines() if "(offline)" in line]
    assert offline and max(int(re.findall(r"queued (\d+)", x)[0]) for x in offline) >= 4, err
    assert (s["acknowledged"], s["queued"], s["rejected"]) == (s["sent"], 0, 0)
    got = await recorded(w)
    assert sum(got.values()) == s["sent"] and set(got.values()) == {1}


async def test_bad_arguments_are_refused_clearly(gw: Any, tmp_path: Path) -> None:
    rc, _, err = await simulate(gw, "--state-dir", str(tmp_path), "--outage", "later")
    assert rc == 2 and "START+LENGTH" in err  # argparse's usage error
    rc, _, err = await simulate(gw, "--state-dir", str(tmp_path / "s"))
    assert rc == 1 and "no invite" in err
    rc, _, err = await simulate(gw, "--state-dir", str(tmp_path), "--transport", "mqtt")
    assert rc == 1 and "--mqtt-url" in err


@pytest.mark.parametrize(
    "body",
    [
        {"devices": "x"},
        {"devices": [{"invite": "a", "secret": "b"}]},
        {"devices": [{"invite": 7}]},
        {"devices": [{"invite": "a", "profile": "asthma"}]},
    ],
    ids=["not-a-list", "unknown-key", "not-a-string", "unknown-profile"],
)
def test_a_malformed_provisioning_file_is_refused(tmp_path: Path, body: Any) -> None:
    from gateway.devicekit.simulate import provisioning

    path = tmp_path / "p.json"
    path.write_text(json.dumps(body))
    with pytest.raises(ValueError, match=r"p\.json"):
        provisioning(path)
