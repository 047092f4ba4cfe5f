"""A browser call relayed through a real coturn: Debian's ``turnserver`` on loopback with the
gateway's TURN secret (``use-auth-secret``), the gateway handing out its URI and credentials
(``GET /v1/turn-credentials``), and both call pages opened with the ``?relay=1`` diagnostic
(``iceTransportPolicy: "relay"``). The test asks each page's own ``RTCPeerConnection`` for
``getStats()``: the selected candidate pair is a relay candidate of this coturn on both
sides, and inbound video frames are decoded."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import need
from tests.gateway.conftest import LiveGateway
from tests.gateway.test_call_coturn import _port, start_turnserver, wait_until_answering
from tests.web.browser import ready
from tests.web.people import grant, open_me, patient, provider, schedule, wait_debug, wait_frames

# The relay ports turnserver allocates from (its --min-port/--max-port in start_turnserver).
RELAY_PORTS = range(49200, 49401)

# Before any page script: keep each RTCPeerConnection the page makes, so the test can ask it
# for getStats() itself instead of taking the page's word.
CAPTURE = """
(() => {
  const Native = window.RTCPeerConnection;
  const made = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      made.push(this);
    }
  };
  Object.defineProperty(window, "__testPcs", { value: made });
})();
"""

# The current connection's configuration, selected pair and inbound video, from getStats().
STATS = """
async () => {
  const pc = window.__testPcs.filter((p) => p.signalingState !== "closed").at(-1);
  if (!pc) return null;
  const report = await pc.getStats();
  let pair = null;
  let video = null;
  report.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) {
      pair = report.get(s.selectedCandidatePairId);
    }
    if (s.type === "inbound-rtp" && s.kind === "video") video = s;
  });
  const candidate = (id) => {
    const c = id && report.get(id);
    return c ? { type: c.candidateType, address: c.address, port: c.port,
                 protocol: c.protocol, relayProtocol: c.relayProtocol ?? null } : null;
  };
  return {
    policy: pc.getConfiguration().iceTransportPolicy,
    servers: pc.getConfiguration().iceServers.map((s) => s.urls).flat(),
    state: pc.connectionState,
    pair: pair && { state: pair.state, bytesReceived: pair.bytesReceived,
                    bytesSent: pair.bytesSent },
    local: candidate(pair?.localCandidateId),
    remote: candidate(pair?.remoteCandidateId),
    framesDecoded: video?.framesDecoded ?? 0,
  };
}
"""

# A relay-only connection of its own with the page's current TURN configuration (the
# password forged when asked): the candidate types gathered and the ICE errors seen.
PROBE = """
async (forge) => {
  const live = window.__testPcs.filter((p) => p.signalingState !== "closed").at(-1);
  const iceServers = live.getConfiguration().iceServers.map((s) =>
    forge ? { ...s, credential: "Zm9yZ2Vk" } : s);
  const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: "relay" });
  const types = [];
  const errors = [];
  pc.onicecandidate = (e) => e.candidate && types.push(e.candidate.type);
  pc.onicecandidateerror = (e) => errors.push(e.errorCode);
  pc.createDataChannel("probe");
  await pc.setLocalDescription();
  await new Promise((done) => {
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && done();
    setTimeout(done, 10000);
  });
  pc.close();
  return { types, errors };
}
"""


@pytest.fixture
def relayed(tmp_path: Path) -> Iterator[tuple[LiveGateway, int]]:
    """A gateway whose TURN URI is a turnserver started here with the gateway's secret."""
    need(shutil.which("turnserver") is not None, "coturn's turnserver (apt-get install coturn)")
    port = _port()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TELEGATE_TURN_URIS", f"turn:127.0.0.1:{port}?transport=udp")
        gw = LiveGateway(tmp_path / "data")
    log = tmp_path / "turn.log"
    try:
        # The gateway made the secret on start; coturn checks credentials with the same one.
        secret = (gw.data_dir / "keys" / "turn.secret").read_bytes().strip()
        server = start_turnserver(secret, port, log)
        try:
            wait_until_answering(port, server, log)
            yield gw, port
        finally:
            server.terminate()
            server.wait(10)
    finally:
        gw.stop()


def _stats(page: Page) -> dict[str, Any]:
    out: dict[str, Any] | None = page.evaluate(STATS)
    assert out is not None, "the page has no peer connection"
    return out


def test_a_browser_call_relayed_through_coturn(
    chromium: Browser, relayed: tuple[LiveGateway, int], shots: Path
) -> None:
    gw, port = relayed
    prov = provider(chromium, gw)
    pat = patient(chromium, gw)
    for person in (prov, pat):
        person.page.add_init_script(CAPTURE)

    open_me(pat.page, gw)
    grant(pat.page, prov.sub, {"call"})
    sid = schedule(prov, gw, pat.sub)
    # Both sides open the call with the relay-only diagnostic.
    for person in (prov, pat):
        person.page.goto(f"{gw.url}/call/{sid}?relay=1")
        ready(person.page)
        assert person.page.evaluate("() => window.__telegate.relayOnly") is True
    expect(pat.page.locator("#waiting-room")).to_be_visible()
    prov.page.locator(f'#queue-list li[data-session="{sid}"]').get_by_role(
        "button", name=f"Admit {pat.label}"
    ).click()

    for person in (pat, prov):
        wait_debug(person.page, "t.pcState === 'connected'", 30_000)
    before = {p.sub: wait_frames(p.page, 0, 30_000) for p in (pat, prov)}
    # Frames keep coming through the relay, not just a first one.
    for person in (pat, prov):
        wait_frames(person.page, before[person.sub] + 10, 30_000)

    uri = f"turn:127.0.0.1:{port}?transport=udp"
    for person in (pat, prov):
        got = _stats(person.page)
        assert got["policy"] == "relay", got
        assert got["servers"] == [uri], got  # the gateway's TURN URI, as configured
        assert got["state"] == "connected", got
        assert got["pair"] and got["pair"]["state"] == "succeeded", got
        assert got["pair"]["bytesReceived"] > 0 and got["pair"]["bytesSent"] > 0, got
        # The selected pair's own end is a relayed address of this turnserver.
        local = got["local"]
        assert local and local["type"] == "relay", got
        assert local["address"] == "127.0.0.1" and local["port"] in RELAY_PORTS, got
        assert local["relayProtocol"] == "udp", got
        # With both sides relay-only, the other end is the other side's relayed address.
        assert got["remote"] and got["remote"]["type"] in ("relay", "prflx"), got
        assert got["remote"]["port"] in RELAY_PORTS, got
        assert got["framesDecoded"] > before[person.sub], got
        # The page says the same in its connection details.
        wait_debug(person.page, "t.route && t.route.local === 'relay'")
        expect(person.page.locator("#route")).to_contain_text(
            "through a TURN relay (this side: relay over udp"
        )

    # coturn checks the credentials: in the patient's browser, a relay-only connection with
    # the page's own TURN configuration gathers a relay candidate; with the password forged,
    # the allocation is refused (401) and there is none.
    good = pat.page.evaluate(PROBE, False)
    assert "relay" in good["types"], good
    forged = pat.page.evaluate(PROBE, True)
    assert forged["types"] == [] and 401 in forged["errors"], forged

    pat.page.screenshot(path=shots / "call-relayed-patient.png", full_page=True)
    prov.page.screenshot(path=shots / "call-relayed-provider.png", full_page=True)
    prov.page.get_by_role("button", name="End call").click()
    expect(pat.page.locator("#status")).to_contain_text("The provider ended the call")
    pat.tab.assert_clean()
    prov.tab.assert_clean()
