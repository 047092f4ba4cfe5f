"""A browser patient in a call with a provider that is an aiortc peer in Python: the page's
signalling, SDP and trickled candidates work with a WebRTC stack other than Chromium's, and
the fingerprints on the ledger are the ones each side really used."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, expect

from gateway.client import enroll as enroll_api
from tests.gateway.conftest import LiveGateway
from tests.gateway.idclient import local_invite
from tests.web.browser import ready
from tests.web.peer import AiortcProvider
from tests.web.people import NPI, SESSION_URL, open_me, patient, wait_debug, wait_frames


def _media_bound(gw: LiveGateway, sid: str) -> dict[str, set[tuple[str, str]]]:
    def get(path: str) -> dict[str, Any]:
        with urllib.request.urlopen(gw.url + path, timeout=5) as r:
            out: dict[str, Any] = json.loads(r.read())
            return out

    size = int(get("/readyz")["ledger_size"])
    bound: dict[str, set[tuple[str, str]]] = {}
    for i in range(size):
        ev = get(f"/ledger/entries/{i}")["event"]
        if ev["type"] == "session.media_bound" and ev.get("session") == sid:
            fps = {(f["algorithm"], f["value"]) for f in ev["data"]["fingerprints"]}
            bound.setdefault(ev["actor"], set()).update(fps)
    return bound


def test_a_browser_patient_calls_an_aiortc_provider(
    chromium: Browser, gateway: LiveGateway, shots: Path
) -> None:
    doctor = enroll_api(gateway.url, local_invite(gateway.config, "provider", npi=NPI))
    pat = patient(chromium, gateway)
    page = pat.page

    # The patient asks for the call from /me (no consent needed to call one's provider).
    open_me(page, gateway)
    page.get_by_label("Provider to ask").fill(doctor.sub)
    page.get_by_role("button", name="Request the call").click()
    expect(page.locator("#calls-status")).to_contain_text("call requested")
    page.locator("#call-list li", has_text=doctor.sub).get_by_role(
        "link", name="Join the call"
    ).click()
    page.wait_for_url(SESSION_URL)
    ready(page)
    match = SESSION_URL.search(page.url)
    assert match is not None
    sid = match.group(1)
    expect(page.locator("#waiting-room")).to_be_visible()

    peer = AiortcProvider(doctor, sid).start()
    try:
        assert peer.admitted.wait(20), peer.errors
        wait_debug(page, "t.pcState === 'connected'")
        assert peer.connected.wait(20), peer.errors
        # Video both ways: Chromium decodes aiortc's frames, aiortc receives Chromium's.
        assert wait_frames(page) > 0
        assert peer.receiving.wait(20), (peer.frames_in, peer.errors)
        page.screenshot(path=shots / "call-patient-with-aiortc.png")

        bound = _media_bound(gateway, sid)
        offered = {(f["algorithm"], f["value"]) for f in peer.offer_fingerprints}
        assert offered and bound[pat.sub] == offered
        assert bound[doctor.sub] == peer.local_fingerprints

        peer.end_call()
        expect(page.locator("#status")).to_contain_text("The provider ended the call")
        expect(page.locator("#ended")).to_be_visible()
    finally:
        peer.stop()
    assert peer.errors == []
    assert peer.messages[0] == "hello" and "offer" in peer.messages
    pat.tab.assert_clean()
