"""Enrollment in real Chromium: invite links and typed codes, readable refusals, what each
role is offered next, replacing and forgetting a key, and a gateway that demands DPoP nonces."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Response, expect

from tests.gateway.conftest import LiveGateway
from tests.gateway.idclient import local_invite
from tests.web.browser import PHONE, enroll, open_console, open_tab, pin, ready, rows, search


def test_a_bad_invite_is_explained_and_a_typed_code_enrolls(
    chromium: Browser, gateway: LiveGateway, shots: Path
) -> None:
    tab = open_tab(chromium, PHONE)
    page = tab.page
    page.goto(f"{gateway.url}/enroll?invite=not-a-real-invite")
    status = page.locator("#status")
    # The gateway's problem+json, in words, before anyone is asked for a name.
    expect(status).to_have_text("Error: The invite is unknown, used or expired (HTTP 400)")
    expect(page.locator("#name-field")).to_be_hidden()
    expect(page.locator("#done")).to_be_hidden()
    page.screenshot(path=shots / "enroll-refused-phone.png", full_page=True)

    # Nothing was stored: the console says this browser is not enrolled.
    open_console(page, gateway)
    expect(page.locator("#enrollment")).to_contain_text("holds no telegate identity")
    expect(page.get_by_role("button", name="Search", exact=True)).to_be_disabled()
    page.screenshot(path=shots / "console-not-enrolled-phone.png")

    # Typed by hand and submitted from the keyboard.
    page.goto(f"{gateway.url}/enroll")
    ready(page)
    code = local_invite(gateway.config, "auditor", display_name="Ann Auditor")
    page.get_by_label("Invite code").fill(code)
    page.get_by_label("Invite code").press("Enter")
    expect(page.locator("#done")).to_be_visible()
    # The invite said who this is: no name was asked.
    expect(page.locator("#name-field")).to_be_hidden()
    expect(page.locator("#name")).to_have_text("Ann Auditor")
    expect(page.locator("#role")).to_have_text("auditor")
    tab.assert_clean()

    # The same invite in another browser: spent.
    other = open_tab(chromium)
    other.page.goto(f"{gateway.url}/enroll?invite={code}")
    expect(other.page.locator("#status")).to_contain_text("unknown, used or expired")
    other.assert_clean()


def test_a_patient_is_not_offered_the_console(chromium: Browser, gateway: LiveGateway) -> None:
    tab = open_tab(chromium)
    page = tab.page
    sub = enroll(tab, gateway, "patient")
    expect(page.get_by_role("link", name="My page")).to_be_visible()
    expect(page.get_by_role("link", name="Compliance console")).to_have_count(0)
    open_console(page, gateway)
    expect(page.locator("#enrollment")).to_contain_text("needs an auditor identity")
    expect(page.locator("#enrollment")).to_contain_text(sub)
    expect(page.get_by_role("button", name="Search", exact=True)).to_be_disabled()
    expect(page.get_by_role("button", name="CSV")).to_be_disabled()
    tab.assert_clean()


def test_an_enrolled_browser_asks_before_replacing_and_can_forget(
    chromium: Browser, gateway: LiveGateway
) -> None:
    tab = open_tab(chromium)
    page = tab.page
    first = enroll(tab, gateway)
    code = local_invite(gateway.config, "auditor")
    # An invite link with the code in the fragment (never sent to a server), opened on the
    # page already showing: only the fragment changes.
    page.goto(f"{gateway.url}/enroll#invite={code}")
    # Not redeemed on its own: the browser already holds an identity.
    expect(page.locator("#status")).to_contain_text("Press Enroll to replace")
    expect(page.locator("#current")).to_contain_text(first)
    expect(page.get_by_label("Invite code")).to_have_value(code)
    assert code not in page.url
    page.get_by_role("button", name="Enroll", exact=True).click()
    # The invite names nobody: the page asks, then enrolls.
    expect(page.get_by_label("Your name")).to_be_focused()
    page.get_by_label("Your name").fill("Ann Auditor")
    page.get_by_role("button", name="Enroll", exact=True).click()
    expect(page.locator("#done")).to_be_visible()
    expect(page.locator("#name")).to_have_text("Ann Auditor")
    second = page.locator("#sub").inner_text()
    assert second != first

    page.goto(f"{gateway.url}/enroll")
    ready(page)
    expect(page.locator("#current")).to_contain_text(second)
    page.get_by_role("button", name="Forget this browser's key").click()
    expect(page.locator("#status")).to_contain_text("key is deleted")
    expect(page.locator("#current")).to_be_hidden()
    open_console(page, gateway)
    expect(page.locator("#enrollment")).to_contain_text("holds no telegate identity")
    tab.assert_clean()


def test_a_gateway_that_demands_dpop_nonces(
    chromium: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 9449 section 8: the token endpoint and the API answer with a nonce to use; the
    browser retries once with it, for the token and for each API call."""
    monkeypatch.setenv("TELEGATE_DPOP_REQUIRE_NONCE", "true")
    gw = LiveGateway(tmp_path / "data")
    try:
        tab = open_tab(chromium)
        page = tab.page
        asked: list[str] = []

        def note(resp: Response) -> None:
            if resp.status >= 400 and resp.headers.get("dpop-nonce"):
                asked.append(resp.url)

        page.on("response", note)
        enroll(tab, gw)
        open_console(page, gw)
        pin(page, (gw.data_dir / "keys" / "log.vkey").read_text())
        search(page)
        assert rows(page) and {r["state"] for r in rows(page)} == {"ok"}
        # The gateway did ask (a token request without a nonce was refused with one).
        assert any(u.endswith("/oauth/token") for u in asked), asked
        tab.assert_clean()
    finally:
        gw.stop()


NO_ED25519 = """
const generateKey = SubtleCrypto.prototype.generateKey;
SubtleCrypto.prototype.generateKey = function (algorithm, ...rest) {
    const name = typeof algorithm === "string" ? algorithm : algorithm?.name;
    if (String(name).toLowerCase() === "ed25519") {
        return Promise.reject(new DOMException("Unrecognized name", "NotSupportedError"));
    }
    return generateKey.call(this, algorithm, ...rest);
};
"""


def test_a_browser_without_ed25519_keys_enrolls_with_p256(
    chromium: Browser, gateway: LiveGateway
) -> None:
    """The ES256 path end to end: enrollment, client assertion, DPoP proofs, the console."""
    tab = open_tab(chromium)
    tab.context.add_init_script(NO_ED25519)
    page = tab.page
    enroll(tab, gateway)
    expect(page.locator("#alg")).to_contain_text("P-256 (ES256)")
    open_console(page, gateway)
    pin(page, (gateway.data_dir / "keys" / "log.vkey").read_text())
    search(page)
    assert rows(page) and {r["state"] for r in rows(page)} == {"ok"}
    key = page.evaluate(
        """async () => {
        const db = await new Promise((ok) => {
            const r = indexedDB.open("telegate");
            r.onsuccess = () => ok(r.result);
        });
        const holder = await new Promise((ok) => {
            const g = db.transaction("holder").objectStore("holder").get("self");
            g.onsuccess = () => ok(g.result);
        });
        const k = holder.privateKey;
        return [holder.alg, k.algorithm.name, k.algorithm.namedCurve, k.extractable, holder.jwk];
    }"""
    )
    assert key[:4] == ["ES256", "ECDSA", "P-256", False]
    assert sorted(key[4]) == ["crv", "kty", "x", "y"]
    tab.assert_clean()


def test_an_invite_without_a_name_asks_for_one(
    chromium: Browser, gateway: LiveGateway, shots: Path
) -> None:
    """The page asks for the name the invite does not carry; a refused name spends nothing
    and brings the person back to the name; the name kept is the trimmed one."""
    tab = open_tab(chromium, PHONE)
    page = tab.page
    code = local_invite(gateway.config, "patient")
    page.goto(f"{gateway.url}/enroll#invite={code}")
    name = page.get_by_label("Your name")
    expect(name).to_be_focused()
    expect(page.locator("#status")).to_contain_text("Enter your name")
    expect(page.locator("#done")).to_be_hidden()
    page.screenshot(path=shots / "enroll-asks-name-phone.png", full_page=True)

    page.get_by_role("button", name="Enroll", exact=True).click()
    expect(page.locator("#status")).to_have_text("Error: enter your name first.")
    name.fill("<b>Pat</b>")
    name.press("Enter")
    expect(page.locator("#status")).to_contain_text("display_name must be")
    expect(name).to_be_focused()

    name.fill("  Zoe\u0308   O\u2019Brien ")
    name.press("Enter")
    expect(page.locator("#done")).to_be_visible()
    expect(page.locator("#name")).to_have_text("Zo\u00eb O\u2019Brien")
    expect(page.locator("#role")).to_have_text("patient")
    page.screenshot(path=shots / "enroll-done-named-phone.png", full_page=True)
    tab.assert_clean()
