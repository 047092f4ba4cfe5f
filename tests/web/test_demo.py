"""`make demo` links: the seeded identity's key travels in the URL fragment, the enrollment
page imports it (non-extractable) and goes on to the page the link names, on this site only."""

from __future__ import annotations

import base64
import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from gateway.client import Credentials
from gateway.demo import browser_link, seed
from tests.gateway.conftest import LiveGateway
from tests.web.browser import PHONE, enroll, open_tab, ready, shows_person


@pytest.fixture(scope="module")
def demo(gateway: LiveGateway) -> dict[str, Any]:
    """The demo scenario, seeded through the real API into the module's gateway."""
    scenario = seed(gateway.url, gateway.data_dir, gateway.database_url)
    creds = {
        role: Credentials.load(gateway.data_dir / "demo" / f"{role}.json")
        for role in ("patient", "provider", "auditor")
    }
    return {**scenario, "creds": creds}


def _link(gw: LiveGateway, demo: dict[str, Any], role: str, then: str) -> str:
    return browser_link(gw.url, demo["creds"][role], role, then)


HOLDER = """async () => {
    const db = await new Promise((ok) => {
        const r = indexedDB.open("telegate");
        r.onsuccess = () => ok(r.result);
    });
    const h = await new Promise((ok) => {
        const g = db.transaction("holder").objectStore("holder").get("self");
        g.onsuccess = () => ok(g.result);
    });
    return h && [h.sub, h.role, h.demo, h.privateKey.algorithm.name, h.privateKey.extractable,
                 h.privateKey.usages];
}"""


def test_the_patient_link_lands_on_me_as_that_patient(
    chromium: Browser, gateway: LiveGateway, demo: dict[str, Any], shots: Path
) -> None:
    tab = open_tab(chromium, PHONE)
    page = tab.page
    link = _link(gateway, demo, "patient", "/me")
    assert "#demo=" in link
    page.goto(link)
    page.wait_for_url(f"{gateway.url}/me")
    ready(page)
    patient = demo["ids"]["patient"]
    expect(page.locator("#who")).to_have_text(f"{patient} · patient")
    expect(page.locator("#demo-banner")).to_contain_text("Demo identity")
    # The key is in this browser, unreadable by scripts; the fragment left no trace.
    assert page.evaluate(HOLDER) == [patient, "patient", True, "Ed25519", False, ["sign"]]
    assert "demo=" not in page.url
    # What the seed made shows on the page: the consent and the scheduled call.
    provider = demo["ids"]["provider"]
    expect(page.locator("#consent-table tbody tr", has_text=provider)).to_have_attribute(
        "data-state", "active"
    )
    expect(page.locator(f'#call-list li[data-session="{demo["session"]}"]')).to_contain_text(
        "scheduled"
    )
    # The demo's people have names: the patient sees who their provider is.
    shows_person(page.locator("#consent-table"), "Dr Jane Demo", provider)
    shows_person(page.locator("#call-list"), "Dr Jane Demo", provider)
    page.screenshot(path=shots / "me-demo-patient-phone.png", full_page=True)
    tab.assert_clean()
    # The link was replaced in history by /me: "back" leaves the site, it does not reopen it.
    page.go_back()
    assert page.url == "about:blank"


def test_the_provider_link_opens_the_call(
    chromium: Browser, gateway: LiveGateway, demo: dict[str, Any]
) -> None:
    tab = open_tab(chromium)
    page = tab.page
    sid = demo["session"]
    page.goto(_link(gateway, demo, "provider", f"/call/{sid}"))
    page.wait_for_url(f"{gateway.url}/call/{sid}")
    ready(page)
    expect(page.locator("#who")).to_have_text(f"{demo['ids']['provider']} · provider")
    expect(page.locator("#demo-banner")).to_be_visible()
    expect(page.locator("#queue")).to_be_visible()
    expect(page.locator("#call-info")).to_contain_text(demo["ids"]["patient"])
    tab.assert_clean()


@pytest.mark.parametrize(
    "then",
    [
        "//evil.example/me",
        "https://evil.example/me",
        "/\\evil.example/me",
        "javascript:alert(1)",
        "me",
    ],
)
def test_a_next_page_off_this_site_is_refused(
    chromium: Browser, gateway: LiveGateway, demo: dict[str, Any], then: str
) -> None:
    tab = open_tab(chromium)
    page = tab.page
    link = _link(gateway, demo, "auditor", "NEXT").replace(
        "next=NEXT", "next=" + urllib.parse.quote(then, safe="")
    )
    page.goto(link)
    ready(page)
    expect(page.locator("#status")).to_contain_text("not a page of this site: not followed")
    assert page.url == f"{gateway.url}/enroll"
    # The identity itself is kept (it is the link's owner's), and said to be a demo one.
    expect(page.locator("#demo")).to_contain_text(demo["ids"]["auditor"])
    expect(page.locator("#current-sub")).to_have_text(demo["ids"]["auditor"])
    tab.assert_clean()


def test_a_real_identity_is_not_replaced_without_asking(
    chromium: Browser, gateway: LiveGateway, demo: dict[str, Any]
) -> None:
    tab = open_tab(chromium)
    page = tab.page
    mine = enroll(tab, gateway, "patient")
    page.goto(_link(gateway, demo, "patient", "/me"))
    ready(page)
    expect(page.locator("#status")).to_contain_text("Use the demo identity")
    expect(page.locator("#current-sub")).to_have_text(mine)
    page.get_by_role("button", name="Use the demo identity").click()
    page.wait_for_url(f"{gateway.url}/me")
    ready(page)
    expect(page.locator("#who")).to_contain_text(demo["ids"]["patient"])
    tab.assert_clean()


def test_a_damaged_or_forged_demo_link_is_refused(
    chromium: Browser, gateway: LiveGateway, demo: dict[str, Any]
) -> None:
    tab = open_tab(chromium)
    page = tab.page
    page.goto(f"{gateway.url}/enroll?next=/me#demo=not-base64-json")
    ready(page)
    expect(page.locator("#status")).to_contain_text("the demo link is damaged")
    # A well-formed blob whose key is not the one enrolled for that subject.
    creds = demo["creds"]["patient"]
    other = Credentials(creds.server, creds.sub, bytes(32), creds.log_vkey)
    blob = {"sub": creds.sub, "role": "patient", "d": _b64u(other.seed), "x": other.jwk["x"]}
    fragment = _b64u(json.dumps(blob).encode())
    forged = open_tab(chromium)
    forged.page.goto(f"{gateway.url}/enroll?next=/me#demo={fragment}")
    ready(forged.page)
    expect(forged.page.locator("#status")).to_have_attribute("data-kind", "error")
    expect(forged.page.locator("#status")).to_contain_text("(HTTP 4")
    assert forged.page.url == f"{gateway.url}/enroll"
    tab.assert_clean()
    forged.assert_clean()


def _b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
