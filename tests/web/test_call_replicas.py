"""A call in two real browsers whose parties are served by different replicas (issue 15):
the patient's pages come from replica A, the provider's from replica B, two ``telegate
serve`` processes sharing one PostgreSQL database, one Redis and the key dir. Signalling
crosses Redis; media flows browser to browser; the DTLS fingerprints are on the ledger once
per party."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from gateway.config import Config
from tests.replicas.conftest import ORIGIN, Replica, Replicas, database, pg_server
from tests.web.browser import ready
from tests.web.people import grant, open_me, patient, provider, schedule, wait_debug, wait_frames

__all__ = ["database", "pg_server"]  # the fixtures this module takes from tests/replicas


class OwnOrigin(Replica):
    """A replica addressed by its own origin (no shared ``public_url``): each browser stays
    on the replica that served its pages, as a load balancer without stickiness could not
    promise, but as two hosts named apart can."""

    def env(self) -> dict[str, str]:
        env = super().env()
        env.pop("TELEGATE_PUBLIC_URL", None)
        return env


@dataclass
class View:
    """What the page helpers need of a gateway: its URL and where its identities live."""

    url: str
    config: Config
    data_dir: Path


@pytest.fixture
def two(tmp_path: Path, database: str, session_redis: str) -> Iterator[tuple[View, View]]:
    group = Replicas(tmp_path, database, session_redis)
    a = OwnOrigin("a", group.data_dir, database, group.logs, session_redis)
    b = OwnOrigin("b", group.data_dir, database, group.logs, session_redis)
    group.members += [a, b]
    try:
        a.start()  # the first start makes the signing keys in the shared key dir
        b.start()
        config = Config(data_dir=group.data_dir, log_origin=ORIGIN, database_url=database)
        yield View(a.url, config, group.data_dir), View(b.url, config, group.data_dir)
    finally:
        group.stop()


def _session_events(gw: View, sid: str) -> list[dict[str, Any]]:
    def get(path: str) -> dict[str, Any]:
        with urllib.request.urlopen(gw.url + path, timeout=5) as r:
            out: dict[str, Any] = json.loads(r.read())
            return out

    size = int(get("/readyz")["ledger_size"])
    events = [get(f"/ledger/entries/{i}")["event"] for i in range(size)]
    return [e for e in events if e.get("session") == sid]


def test_a_call_between_browsers_on_two_replicas(
    chromium: Browser, two: tuple[View, View], shots: Path
) -> None:
    on_a, on_b = two
    prov = provider(chromium, on_b)  # type: ignore[arg-type]
    pat = patient(chromium, on_a)  # type: ignore[arg-type]
    open_me(pat.page, on_a)  # type: ignore[arg-type]
    grant(pat.page, prov.sub, {"call"})

    sid = schedule(prov, on_b, pat.sub)  # type: ignore[arg-type]
    expect(prov.page.locator("#status")).to_contain_text("has not joined yet")

    # The patient joins on replica A; replica B's provider page sees the waiting room.
    pat.page.goto(f"{on_a.url}/call/{sid}")
    ready(pat.page)
    expect(pat.page.locator("#waiting-room")).to_be_visible()
    queued = prov.page.locator(f'#queue-list li[data-session="{sid}"]')
    expect(queued).to_contain_text(pat.sub)

    queued.get_by_role("button", name=f"Admit {pat.label}").click()
    for person in (pat, prov):
        wait_debug(person.page, "t.pcState === 'connected'", timeout=40_000)
    expect(pat.page.locator("#waiting-room")).to_be_hidden()
    assert wait_frames(pat.page) > 0
    assert wait_frames(prov.page) > 0
    pat.page.screenshot(path=shots / "replicas-call-patient-on-a.png")
    prov.page.screenshot(path=shots / "replicas-call-provider-on-b.png")

    # Each party's DTLS fingerprints on the ledger once, whichever replica took the SDP.
    bound = [e for e in _session_events(on_a, sid) if e["type"] == "session.media_bound"]
    parties = sorted(e["data"]["party"] for e in bound)
    assert parties == ["patient", "provider"], bound
