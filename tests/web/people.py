"""The people and devices of a call, as the web tests use them: a patient and a provider in
their own browsers (each enrolled from an invite link), the patient's monitoring device
posting signed batches from Python, and the steps each takes on /me and /call."""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from playwright.sync_api import Browser, Page, ViewportSize, expect

from gateway.auth.jwk import thumbprint
from gateway.client import Credentials, Session
from gateway.client import enroll as enroll_api
from tests.gateway.conftest import LiveGateway
from tests.gateway.vitals.world import iso
from tests.web.browser import DESKTOP, NAMES, Tab, enroll, open_tab, ready

NPI = "1234567893"  # passes the Luhn check with the 80840 prefix
SESSION_URL = re.compile(r"/call/([0-9a-f]{32})$")


@dataclass
class Person:
    tab: Tab
    sub: str
    name: str

    @property
    def page(self) -> Page:
        return self.tab.page

    @property
    def label(self) -> str:
        """How the pages name this person in a button's label: "Dr Jane Doe (prov:…)"."""
        return f"{self.name} ({self.sub})"


def patient(
    browser: Browser,
    gw: LiveGateway,
    viewport: ViewportSize = DESKTOP,
    name: str = NAMES["patient"],
) -> Person:
    """A patient enrolled from a nameless invite: they give their name on the page."""
    tab = open_tab(browser, viewport)
    return Person(tab, enroll(tab, gw, "patient", name), name)


def provider(
    browser: Browser,
    gw: LiveGateway,
    viewport: ViewportSize = DESKTOP,
    name: str = NAMES["provider"],
) -> Person:
    """A provider whose invite carries their name, as an admin writes it."""
    tab = open_tab(browser, viewport)
    return Person(tab, enroll(tab, gw, "provider", npi=NPI, display_name=name), name)


class Device:
    """The patient's home monitor: enrolled through an invite the patient makes from their
    own browser (their key never leaves it), posting device-signed batches through the real
    ``POST /v1/vitals``."""

    def __init__(self, gw: LiveGateway, patient: Person) -> None:
        code = patient.page.evaluate(
            """async (sub) => {
              const { api } = await import("/web/js/auth.js");
              const body = { role: "device", patient: sub };
              return (await api("/v1/invites", { method: "POST", json: body })).invite;
            }""",
            patient.sub,
        )
        self.creds: Credentials = enroll_api(
            gw.url, str(code), serial="WEB-0001", model="telegate test monitor"
        )
        self.session = Session(self.creds)

    def post(self, readings: list[dict[str, Any]]) -> dict[str, Any]:
        payload = {"batch_id": secrets.token_hex(8), "readings": readings}
        jws = jwt.api_jws.PyJWS().encode(
            json.dumps(payload).encode(),
            self.creds.key,
            algorithm="EdDSA",
            headers={"typ": "vitals+json", "kid": thumbprint(self.creds.jwk)},
        )
        out: dict[str, Any] = self.session.request(
            "POST", "/v1/vitals", jws.encode(), "application/jose"
        )
        return out

    def heart_rate(self, value: float, at: float | None = None) -> dict[str, Any]:
        t = at if at is not None else time.time()
        return self.post([{"code": "8867-4", "unit": "/min", "value": value, "time": iso(t)}])

    def vitals(self, hr: float, spo2: float, sys: float, dia: float) -> dict[str, Any]:
        t = iso(time.time())
        return self.post(
            [
                {"code": "8867-4", "unit": "/min", "value": hr, "time": t},
                {"code": "59408-5", "unit": "%", "value": spo2, "time": t},
                {
                    "code": "85354-9",
                    "time": t,
                    "components": [
                        {"code": "8480-6", "unit": "mm[Hg]", "value": sys},
                        {"code": "8462-4", "unit": "mm[Hg]", "value": dia},
                    ],
                },
            ]
        )


# -- steps on /me ----------------------------------------------------------------------------


def open_me(page: Page, gw: LiveGateway) -> None:
    page.goto(f"{gw.url}/me")
    ready(page)


def grant(page: Page, grantee: str, scopes: set[str]) -> None:
    """On /me: give ``grantee`` a consent with exactly ``scopes``; waits until it is listed."""
    page.get_by_label("Provider id", exact=True).fill(grantee)
    for scope in ("call", "vitals.read", "vitals.stream", "devices"):
        box = page.locator(f'#grant-form input[value="{scope}"]')
        box.set_checked(scope in scopes)
    page.get_by_role("button", name="Give consent").click()
    expect(page.locator("#consents-status")).to_contain_text("consent given to")
    shown = "every provider" if grantee == "role:provider" else grantee
    row = page.locator("#consent-table tbody tr", has_text=shown).first
    expect(row).to_have_attribute("data-state", "active")


def revoke(page: Page, grantee: str) -> None:
    page.get_by_role("button", name=f"Revoke the consent for {grantee}").click()
    expect(page.locator("#consents-status")).to_contain_text("revoked")


def schedule(provider: Person, gw: LiveGateway, patient_sub: str) -> str:
    """The provider schedules a call from /me and opens it; returns the session id."""
    page = provider.page
    open_me(page, gw)
    row = page.locator(f'#patient-table tr[data-patient="{patient_sub}"]')
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/v1/sessions") and r.status == 201
    ) as created:
        row.get_by_role("button", name="Schedule a call with").click()
    sid = str(created.value.json()["id"])
    expect(page.locator("#patients-status")).to_contain_text("call scheduled")
    # The patient may have other calls with this provider listed: open this one.
    item = page.locator(f'#call-list li[data-session="{sid}"]')
    expect(item).to_contain_text(patient_sub)
    item.get_by_role("link", name="Open the call").click()
    page.wait_for_url(SESSION_URL)
    ready(page)
    match = SESSION_URL.search(page.url)
    assert match is not None and match.group(1) == sid
    return sid


# -- steps on /call ---------------------------------------------------------------------------


def debug(page: Page, name: str) -> Any:
    return page.evaluate(f"() => window.__telegate.{name}")


def wait_debug(page: Page, condition: str, timeout: float = 20_000) -> None:
    """Wait until ``condition`` (JavaScript over ``t``, the page's __telegate) holds."""
    page.wait_for_function(
        f"() => {{ const t = window.__telegate; return !!t && ({condition}); }}", timeout=timeout
    )


def wait_preview(page: Page) -> None:
    """Wait until this side's own camera shows in its preview."""
    page.wait_for_function("() => document.querySelector('#local-video').videoWidth > 0")


def frames(page: Page) -> int:
    return int(page.evaluate("() => window.__telegate.framesDecoded"))


def wait_frames(page: Page, more_than: int = 0, timeout: float = 20_000) -> int:
    """Wait until the page has decoded more than ``more_than`` inbound video frames (its
    getStats() inbound-rtp ``framesDecoded``); returns the count."""
    wait_debug(page, f"t.framesDecoded > {int(more_than)}", timeout)
    return frames(page)


def vital_value(page: Page, code: str) -> str:
    return page.locator(f'#vitals-live [data-code="{code}"] .vital-value').inner_text()
