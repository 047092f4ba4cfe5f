"""/me for a patient: consents given and revoked, the vitals their monitor sent (charts and a
table), the access report with each line verified in the browser against the pinned log
key (a forged line fails), and the calls providers scheduled. For a provider: the patients
who consented and a call scheduled from there. For both: their calls as the gateway lists
them (GET /v1/sessions), including calls the other side made and calls that are over."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Route, expect

from gateway.client import Session
from gateway.client import enroll as enroll_api
from tests.gateway.conftest import LiveGateway
from tests.gateway.idclient import local_invite
from tests.gateway.vitals.world import iso
from tests.web.browser import PHONE, shows_no_name, shows_person
from tests.web.people import (
    NPI,
    SESSION_URL,
    Device,
    grant,
    open_me,
    patient,
    provider,
    revoke,
    schedule,
)

#: A name is whatever its owner typed (here, what an invite carried): shown as text, never run.
XSS = "<img src=x onerror=alert(1)>"


def _vkey(gw: LiveGateway) -> str:
    return (gw.data_dir / "keys" / "log.vkey").read_text().strip()


def _monitor_history(device: Device) -> None:
    """An hour of readings, every ten minutes, ending now."""
    now = time.time()
    for k, hr in enumerate((64, 70, 77, 73, 68, 81, 75)):
        t = iso(now - (6 - k) * 600)
        device.post(
            [
                {"code": "8867-4", "unit": "/min", "value": hr, "time": t},
                {"code": "59408-5", "unit": "%", "value": 96 + k % 3, "time": t},
                {
                    "code": "85354-9",
                    "time": t,
                    "components": [
                        {"code": "8480-6", "unit": "mm[Hg]", "value": 118 + 2 * k},
                        {"code": "8462-4", "unit": "mm[Hg]", "value": 76 + k},
                    ],
                },
                {"code": "8310-5", "unit": "[degF]", "value": 98.2 + k / 10, "time": t},
            ]
        )


def test_the_patient_page(chromium: Browser, gateway: LiveGateway, shots: Path) -> None:
    pat = patient(chromium, gateway)
    page = pat.page
    doctor = enroll_api(
        gateway.url, local_invite(gateway.config, "provider", npi=NPI, display_name=XSS)
    )
    _monitor_history(Device(gateway, pat))

    open_me(page, gateway)
    # Signed in as the name said at enrollment, the id beside it.
    expect(page.locator("#who")).to_have_text(f"{pat.name} {pat.sub} · patient")
    shows_person(page.locator("#who"), pat.name, pat.sub)
    grant(page, doctor.sub, {"call", "vitals.read", "devices"})
    mine = page.locator("#consent-table tbody tr", has_text=doctor.sub)
    expect(mine).to_contain_text("register monitoring devices for me")
    grant(page, "role:provider", {"call"})
    revoke(page, "every provider")
    states = page.locator("#consent-table tbody tr").evaluate_all(
        "rs => rs.map(r => r.dataset.state)"
    )
    assert sorted(states) == ["active", "revoked"]
    # The revoked consent offers nothing more to do.
    revoked = page.locator("#consent-table tbody tr[data-state=revoked]")
    expect(revoked.get_by_role("button")).to_have_count(0)
    # The consent names the doctor, with the id under the name; the name is text only.
    given = page.locator("#consent-table tbody tr[data-state=active] td").first
    shows_person(given, XSS, doctor.sub)
    revoke_doctor = f"Revoke the consent for {XSS} ({doctor.sub})"
    expect(page.get_by_role("button", name=revoke_doctor)).to_be_visible()

    # The provider uses the consent, schedules a call, registers a monitor, and declares an
    # emergency.
    as_doctor = Session(doctor)
    assert len(as_doctor.get_json(f"/v1/patients/{pat.sub}/vitals")["readings"]) == 28
    call = as_doctor.post_json("/v1/sessions", {"patient": pat.sub})
    as_doctor.post_json("/v1/invites", {"role": "device", "patient": pat.sub})
    as_doctor.post_json(
        "/v1/emergency-access",
        {"patient": pat.sub, "reason": "patient found unresponsive at home visit"},
    )

    open_me(page, gateway)
    # Vitals: a card per measurement with its latest value and a chart; every reading listed.
    cards = page.locator("#vital-cards li")
    expect(cards).to_have_count(4)
    assert cards.locator(".vital-name").all_inner_texts() == [
        "Heart rate",
        "Blood pressure",
        "Oxygen saturation (SpO₂)",
        "Body temperature",
    ]
    expect(page.locator('#vital-cards [data-code="8867-4"] .vital-value')).to_have_text("75 /min")
    expect(page.locator('#vital-cards [data-code="85354-9"] .vital-value')).to_have_text(
        "130/82 mmHg"
    )
    # Sent in °F, stored and shown in °C.
    expect(page.locator('#vital-cards [data-code="8310-5"] .vital-value')).to_have_text("37.1 °C")
    expect(page.locator('#vital-cards [data-code="8867-4"] svg')).to_have_attribute(
        "aria-label", "Heart rate: 7 readings, 64 to 81 /min"
    )
    expect(page.locator("#vital-table tbody tr")).to_have_count(28)
    expect(page.locator("#vitals-status")).to_contain_text("28 readings in the last day")

    # The call the provider scheduled (not from this browser) is listed by the gateway.
    listed = page.locator(f'#call-list li[data-session="{call["id"]}"]')
    expect(listed).to_contain_text(doctor.sub)
    shows_person(listed, XSS, doctor.sub)
    expect(listed.get_by_role("link", name="Join the call")).to_have_attribute(
        "href", f"/call/{call['id']}"
    )

    # The access report: unverified until a log key is pinned, then every line verified.
    report = page.locator("#access-table tbody tr")
    expect(page.locator("#access-status")).to_contain_text("not verified")
    page.get_by_role("button", name="Fill in the key this server serves").click()
    expect(page.get_by_label("Log verifier key (vkey)")).to_have_value(_vkey(gateway))
    page.get_by_role("button", name="Pin this key").click()
    expect(page.locator("#pin-state")).to_contain_text("Pinned by you")
    expect(page.locator("#access-status")).to_contain_text("verified")
    lines = report.evaluate_all(
        "rs => rs.map(r => [r.dataset.state, r.innerText.replace(/\\s+/g, ' ')])"
    )
    assert lines and {state for state, _ in lines} == {"ok"}, lines
    texts = [text for _, text in lines]
    assert any("used your consent to see your data" in t and doctor.sub in t for t in texts)
    used = report.filter(has_text="used your consent to see your data").first
    shows_person(used, XSS, doctor.sub)
    # Not one name anywhere on the page became markup.
    expect(page.locator("img")).to_have_count(0)
    assert any("scheduled a call with you" in t for t in texts)
    registered = "used your consent to register a monitoring device for you"
    assert any(registered in t and doctor.sub in t for t in texts)
    glass = page.locator("#access-table tbody tr.glass-row")
    expect(glass).to_have_count(1)
    expect(glass).to_contain_text("Emergency access (break-the-glass)")
    # Nobody else's actions and none of the patient's own are listed as disclosures.
    assert all(pat.sub not in t.split("(")[0] for t in texts)
    expect(page.locator("#access-checkpoint")).to_have_attribute("data-state", "ok")
    page.screenshot(path=shots / "me-patient.png", full_page=True)
    pat.tab.assert_clean()


def _flip(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def test_a_forged_access_report_line_fails(
    chromium: Browser, gateway: LiveGateway, shots: Path
) -> None:
    """A server that edits who saw the data, or a proof, is caught line by line; so is a
    summary field that says something other than the logged event."""
    pat = patient(chromium, gateway, PHONE)
    page = pat.page
    doctor = enroll_api(gateway.url, local_invite(gateway.config, "provider", npi=NPI))
    open_me(page, gateway)
    grant(page, doctor.sub, {"call"})
    for _ in range(3):
        Session(doctor).post_json("/v1/sessions", {"patient": pat.sub})

    forged: dict[str, int] = {}

    def forge(route: Route) -> None:
        resp = route.fetch()
        body: dict[str, Any] = resp.json()
        a, b, c = body["accesses"][:3]
        a["event"]["actor"] = "prov:" + "0" * 32  # someone else did it, says the server
        a["who"] = a["event"]["actor"]
        # Under both names of the path (the page reads `inclusion_proof`, docs/api-changes.md).
        b["inclusion_proof"][0] = _flip(b["inclusion_proof"][0])
        b["proof"] = b["inclusion_proof"]
        c["purpose"] = "billing"  # the summary beside an honest event
        forged.update(actor=a["index"], proof=b["index"], summary=c["index"])
        route.fulfill(response=resp, json=body)

    page.route("**/access-report*", forge)
    open_me(page, gateway)
    page.get_by_role("button", name="Fill in the key this server serves").click()
    page.get_by_role("button", name="Pin this key").click()
    expect(page.locator("#access-status")).to_contain_text("3 FAILING verification")
    rows = page.locator("#access-table tbody tr")
    for kind, index in forged.items():
        row = rows.and_(page.locator(f'[data-index="{index}"]'))
        expect(row).to_have_attribute("data-state", "fail")
        want = {
            "actor": "is not the entry in the log",
            "proof": "does not lead to the checkpoint's root",
            "summary": "the report's purpose differs from the logged event",
        }[kind]
        expect(row).to_contain_text(want)
    expect(page.locator("#access-table tbody tr[data-state=ok]")).to_have_count(rows.count() - 3)
    page.locator("#access").screenshot(path=shots / "me-forged-report-phone.png")
    page.locator("#consents").screenshot(path=shots / "me-consents-phone.png")
    pat.tab.assert_clean()


def test_the_provider_page_lists_consenting_patients(
    chromium: Browser, gateway: LiveGateway, shots: Path
) -> None:
    prov = provider(chromium, gateway)
    pat = patient(chromium, gateway, name="Ada Lovelace")
    # Another patient consents to every provider: no relation with this one, no name.
    anyone = patient(chromium, gateway, name="Grace Hopper")
    open_me(anyone.page, gateway)
    grant(anyone.page, "role:provider", {"vitals.read"})
    open_me(pat.page, gateway)
    grant(pat.page, prov.sub, {"vitals.read"})
    shows_person(pat.page.locator("#consent-table"), prov.name, prov.sub)
    open_me(prov.page, gateway)
    row = prov.page.locator(f'#patient-table tr[data-patient="{pat.sub}"]')
    shows_person(row, "Ada Lovelace", pat.sub)
    shows_no_name(prov.page.locator(f'#patient-table tr[data-patient="{anyone.sub}"]'), anyone.sub)
    expect(prov.page.locator("#patients")).not_to_contain_text("Grace Hopper")
    # Without consent to calls there is nothing to schedule.
    expect(row.get_by_role("button", name=f"Schedule a call with {pat.label}")).to_be_disabled()
    grant(pat.page, prov.sub, {"call"})
    sid = schedule(prov, gateway, pat.sub)
    open_me(prov.page, gateway)
    expect(prov.page.locator(f'#call-list li[data-session="{sid}"]')).to_contain_text("scheduled")
    shows_person(prov.page.locator(f'#call-list li[data-session="{sid}"]'), "Ada Lovelace", pat.sub)
    expect(prov.page.locator("#waiting-list")).to_contain_text("Nobody is waiting")
    prov.page.screenshot(path=shots / "me-provider.png", full_page=True)
    prov.tab.assert_clean()
    pat.tab.assert_clean()


def test_calls_are_the_gateways_list_of_ones_own(
    chromium: Browser, gateway: LiveGateway, shots: Path
) -> None:
    """Neither page keeps calls of its own nor reads them from the access report: each side
    sees the calls the other side made, and a call that is over moves to "Past calls"."""
    prov = provider(chromium, gateway)
    pat = patient(chromium, gateway)
    blocked: list[str] = []

    def no_report(route: Route) -> None:
        blocked.append(route.request.url)
        route.abort()

    pat.page.route("**/access-report*", no_report)
    open_me(pat.page, gateway)
    grant(pat.page, prov.sub, {"call"})
    expect(pat.page.locator("#calls-status")).to_have_text("No upcoming calls.")

    # The patient asks for a call: the provider's browser never saw it, its page lists it.
    pat.page.get_by_label("Provider to ask").fill(prov.sub)
    pat.page.get_by_role("button", name="Request the call").click()
    expect(pat.page.locator("#calls-status")).to_contain_text("call requested")
    requested = pat.page.locator("#call-list li").get_attribute("data-session")
    assert requested and SESSION_URL.search(f"/call/{requested}")
    open_me(prov.page, gateway)
    mine = prov.page.locator(f'#call-list li[data-session="{requested}"]')
    expect(mine).to_contain_text(f"With patient {pat.name} {pat.sub}")
    expect(mine).to_have_attribute("data-state", "scheduled")

    # The provider schedules another call, then cancels the requested one from its call page.
    scheduled = schedule(prov, gateway, pat.sub)
    prov.page.goto(f"{gateway.url}/call/{requested}")
    prov.page.get_by_role("button", name="End call").click()
    expect(prov.page.locator("#status")).to_contain_text("You ended the call")

    # The patient's page, without an access report, lists the provider's call and moves the
    # cancelled one to the past calls, with nothing left to join.
    open_me(pat.page, gateway)
    expect(pat.page.locator("#access-status")).to_have_attribute("data-kind", "error")
    assert blocked
    upcoming = pat.page.locator("#call-list li")
    expect(upcoming).to_have_count(1)
    expect(upcoming).to_have_attribute("data-session", scheduled)
    expect(upcoming).to_contain_text(f"With provider {prov.name} {prov.sub}")
    expect(upcoming.get_by_role("link", name="Join the call")).to_have_attribute(
        "href", f"/call/{scheduled}"
    )
    expect(pat.page.locator("#calls-status")).to_have_text("1 upcoming call.")
    past = pat.page.locator("#past-list li")
    expect(pat.page.locator("#past-calls")).to_be_visible()
    expect(past).to_have_count(1)
    expect(past).to_have_attribute("data-session", requested)
    expect(past).to_contain_text("cancelled")
    expect(past.get_by_role("link")).to_have_count(0)
    pat.page.get_by_text("Past calls").click()
    pat.page.locator("#calls").screenshot(path=shots / "me-calls-patient.png")

    # The provider's page agrees.
    open_me(prov.page, gateway)
    expect(prov.page.locator("#call-list li")).to_have_count(1)
    expect(prov.page.locator("#call-list li")).to_have_attribute("data-session", scheduled)
    expect(prov.page.locator("#past-list li")).to_have_attribute("data-session", requested)
    prov.tab.assert_clean()
    pat.tab.assert_clean()
