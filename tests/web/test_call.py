"""A whole call in two real browsers: consent on /me, the provider schedules, the patient
waits, the provider admits, media flows both ways (decoded frames, from getStats), the
patient's monitor streams vitals onto the provider's panel, a dropped signalling socket
comes back with an ICE restart, and the call ends (a past call on both sides' /me). Then: a
revoked consent stops the panel."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, WebSocketRoute, expect

from tests.gateway.conftest import LiveGateway
from tests.web.browser import PHONE, ready, shows_person
from tests.web.people import (
    Device,
    Person,
    debug,
    grant,
    open_me,
    patient,
    provider,
    revoke,
    schedule,
    vital_value,
    wait_debug,
    wait_frames,
    wait_preview,
)


def _join_from_me(pat: Person, gw: LiveGateway, sid: str) -> None:
    """The patient finds the call the provider scheduled on /me and joins it."""
    open_me(pat.page, gw)
    call = pat.page.locator(f'#call-list li[data-session="{sid}"]')
    expect(call).to_contain_text("scheduled")
    call.get_by_role("link", name="Join the call").click()
    pat.page.wait_for_url(f"**/call/{sid}")
    ready(pat.page)


def _ledger_types(gw: LiveGateway, sid: str) -> list[str]:
    def get(path: str) -> dict[str, Any]:
        with urllib.request.urlopen(gw.url + path, timeout=5) as r:
            out: dict[str, Any] = json.loads(r.read())
            return out

    size = int(get("/readyz")["ledger_size"])
    events = [get(f"/ledger/entries/{i}")["event"] for i in range(size)]
    return [e["type"] for e in events if e.get("session") == sid]


class Network:
    """The page's signalling sockets pass through here, so the test can cut one as a
    network drop would: both ends see the connection close."""

    def __init__(self, page: Page) -> None:
        self.sockets: list[tuple[WebSocketRoute, WebSocketRoute]] = []
        page.route_web_socket(re.compile(r"/v1/sessions/[0-9a-f]+/ws"), self._through)

    def _through(self, ws: WebSocketRoute) -> None:
        self.sockets.append((ws, ws.connect_to_server()))

    def drop(self) -> None:
        page_side, server_side = self.sockets[-1]
        server_side.close()
        page_side.close(code=4000, reason="network drop")


def test_a_full_call_between_two_browsers(
    chromium: Browser, gateway: LiveGateway, shots: Path
) -> None:
    prov = provider(chromium, gateway)
    pat = patient(chromium, gateway)
    device = Device(gateway, pat)

    open_me(pat.page, gateway)
    grant(pat.page, prov.sub, {"call", "vitals.stream"})

    sid = schedule(prov, gateway, pat.sub)
    expect(prov.page.locator("#status")).to_contain_text("has not joined yet")
    expect(prov.page.locator("#queue-list")).to_contain_text("Nobody is waiting")

    network = Network(pat.page)
    _join_from_me(pat, gateway, sid)
    expect(pat.page.locator("#waiting-room")).to_be_visible()
    expect(pat.page.locator("#status")).to_contain_text("the provider will admit you")
    # The camera preview runs before anything is sent.
    wait_preview(pat.page)
    pat.page.screenshot(path=shots / "call-patient-waiting.png")

    # The gateway tells the provider's page; the waiting list shows the patient.
    queued = prov.page.locator(f'#queue-list li[data-session="{sid}"]')
    expect(queued).to_contain_text(pat.sub)
    shows_person(queued, pat.name, pat.sub)
    # Each side's call page names the other, the id under the name.
    shows_person(prov.page.locator("#call-info"), pat.name, pat.sub)
    shows_person(pat.page.locator("#call-info"), prov.name, prov.sub)
    expect(pat.page.locator("#remote-caption")).to_have_text(prov.name)
    expect(prov.page.locator("#remote-caption")).to_have_text(pat.name)
    expect(prov.page.locator("#status")).to_contain_text("in the waiting room")
    prov.page.screenshot(path=shots / "call-provider-waiting-list.png")

    queued.get_by_role("button", name=f"Admit {pat.label}").click()
    for person in (pat, prov):
        wait_debug(person.page, "t.pcState === 'connected'")
    expect(pat.page.locator("#waiting-room")).to_be_hidden()
    # Media both ways: each side decodes the other's video.
    assert wait_frames(pat.page) > 0
    assert wait_frames(prov.page) > 0
    assert debug(pat.page, "party") == "patient" and debug(prov.page, "party") == "provider"

    # Vitals from the monitor reach the provider's panel, not the patient's page.
    device.vitals(hr=88, spo2=97.5, sys=124, dia=81)
    wait_debug(prov.page, "t.vitals >= 3")
    expect(prov.page.locator("#vitals-panel")).to_have_attribute("data-state", "live")
    assert vital_value(prov.page, "8867-4") == "88 /min"
    assert vital_value(prov.page, "85354-9") == "124/81 mmHg"
    assert vital_value(prov.page, "59408-5") == "97.5 %"
    for hr in (90, 93, 91):
        device.heart_rate(hr)
    wait_debug(prov.page, "t.vitals >= 6")
    expect(prov.page.locator('#vitals-live [data-code="8867-4"] svg.spark')).to_have_attribute(
        "aria-label", "Heart rate: 4 readings, 88 to 93 /min"
    )
    assert debug(pat.page, "vitals") == 0
    prov.page.screenshot(path=shots / "call-connected-with-vitals.png")
    pat.page.screenshot(path=shots / "call-connected-patient.png")

    # Mute and camera off are toggles a keyboard reaches.
    mute = pat.page.get_by_role("button", name="Mute microphone")
    mute.focus()
    pat.page.keyboard.press("Enter")
    expect(pat.page.get_by_role("button", name="Unmute microphone")).to_have_attribute(
        "aria-pressed", "true"
    )
    pat.page.get_by_role("button", name="Turn camera off").click()
    expect(pat.page.locator("#local-placeholder")).to_be_visible()
    pat.page.get_by_role("button", name="Turn camera on").click()
    pat.page.get_by_role("button", name="Unmute microphone").click()

    # A network drop of the patient's signalling: a new ticket, a new socket, an ICE restart.
    before = wait_frames(prov.page)
    network.drop()
    wait_debug(pat.page, "t.sockets === 2 && t.socket === 'open' && t.restarts === 1")
    # Both sides set fresh TURN credentials first: those the connection was made with end
    # with the attestation they were asked with (they cannot be revoked).
    wait_debug(pat.page, "t.iceRefreshes === 1")
    wait_debug(prov.page, "t.iceRefreshes === 1")
    wait_debug(pat.page, "t.pcState === 'connected'")
    wait_debug(prov.page, "t.pcState === 'connected'")
    assert wait_frames(prov.page, before) > before

    # The provider reloads the page mid-call: it rejoins and offers afresh, the patient's
    # page takes the new connection.
    offers = debug(pat.page, "offers")
    prov.page.reload()
    ready(prov.page)
    wait_debug(prov.page, "t.pcState === 'connected' && t.offers === 1")
    wait_debug(pat.page, "t.pcState === 'connected'")
    assert wait_frames(pat.page) > 0 and wait_frames(prov.page) > 0
    assert debug(pat.page, "offers") == offers  # it answered, it did not offer

    # The provider ends the call; both pages say so and the gateway agrees.
    prov.page.get_by_role("button", name="End call").click()
    expect(prov.page.locator("#status")).to_contain_text("You ended the call")
    expect(pat.page.locator("#status")).to_contain_text("The provider ended the call")
    expect(pat.page.locator("#ended")).to_be_visible()
    types = _ledger_types(gateway, sid)
    for kind in (
        "session.scheduled",
        "session.waiting",
        "session.admitted",
        "session.media_bound",
        "session.connected",
        "session.ended",
    ):
        assert kind in types, (kind, types)
    # Back on /me, the call is over for both: listed under the past calls, nothing to join.
    for person in (pat, prov):
        open_me(person.page, gateway)
        expect(person.page.locator(f'#call-list li[data-session="{sid}"]')).to_have_count(0)
        over = person.page.locator(f'#past-list li[data-session="{sid}"]')
        expect(over).to_have_attribute("data-state", "ended")
        expect(over.get_by_role("link")).to_have_count(0)
    pat.tab.assert_clean()
    prov.tab.assert_clean()


def test_a_revoked_consent_stops_the_providers_vitals_panel(
    chromium: Browser, gateway: LiveGateway, shots: Path
) -> None:
    # Both on phones this time.
    prov = provider(chromium, gateway, PHONE)
    pat = patient(chromium, gateway, PHONE)
    device = Device(gateway, pat)
    open_me(pat.page, gateway)
    # Calls by a consent of its own: withdrawing a consent to calls ends the call
    # (tests/gateway/test_live_revocation.py), withdrawing this one only stops the vitals.
    grant(pat.page, "role:provider", {"call"})
    grant(pat.page, prov.sub, {"vitals.stream"})
    sid = schedule(prov, gateway, pat.sub)
    _join_from_me(pat, gateway, sid)
    wait_preview(pat.page)
    pat.page.screenshot(path=shots / "call-patient-waiting-phone.png")
    prov.page.locator(f'#queue-list li[data-session="{sid}"]').get_by_role("button").click()
    wait_debug(prov.page, "t.state === 'admitted' || t.state === 'connected'")

    device.heart_rate(71)
    wait_debug(prov.page, "t.vitals === 1")
    assert vital_value(prov.page, "8867-4") == "71 /min"

    # The patient withdraws consent on /me, in another tab of the same browser.
    me = pat.tab.context.new_page()
    open_me(me, gateway)
    revoke(me, prov.label)
    expect(me.locator("#consent-table tbody tr", has_text=prov.sub)).to_have_attribute(
        "data-state", "revoked"
    )

    # The next reading is not sent: the panel says the stream stopped, values stay put.
    device.heart_rate(140)
    expect(prov.page.locator("#vitals-panel")).to_have_attribute("data-state", "stopped")
    expect(prov.page.locator("#vitals-state")).to_contain_text("the patient withdrew consent")
    device.heart_rate(141)
    assert vital_value(prov.page, "8867-4") == "71 /min"
    prov.page.screenshot(path=shots / "call-provider-vitals-stopped-phone.png", full_page=True)

    # Consent given again: the stream resumes, and the first reading on the provider's
    # socket after 71 is 142. Messages on one socket keep their order, so 140 and 141
    # never reached the provider's page.
    grant(me, prov.sub, {"vitals.stream"})
    me.close()
    device.heart_rate(142)
    wait_debug(prov.page, "t.vitals === 2")
    expect(prov.page.locator("#vitals-panel")).to_have_attribute("data-state", "live")
    expect(prov.page.locator("#vitals-state")).to_contain_text("resumed")
    expect(prov.page.locator('#vitals-live [data-code="8867-4"] svg.spark')).to_have_attribute(
        "aria-label", "Heart rate: 2 readings, 71 to 142 /min"
    )
    pat.tab.assert_clean()
    prov.tab.assert_clean()
