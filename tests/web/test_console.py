"""The compliance console in real Chromium: an auditor enrolls from an invite link, pins the
log key, searches, and sees every row verified in the browser; a row or proof tampered on
the wire, and a wrong pinned key, are shown failing; no secret is left where scripts or
other pages could read it."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Route, expect

from gateway.client import Session
from gateway.client import enroll as enroll_api
from ledger.note import Signer
from tests.gateway.conftest import LiveGateway
from tests.gateway.idclient import local_invite
from tests.web.browser import (
    PHONE,
    enroll,
    open_console,
    open_tab,
    pin,
    ready,
    rows,
    search,
    shown,
    shows_person,
    wait_shown,
)

LOG_NAME = "live.example/telegate/log"


def vkey(gw: LiveGateway) -> str:
    """The log key as its operator publishes it out of band (not read from the server)."""
    return (gw.data_dir / "keys" / "log.vkey").read_text().strip()


def test_auditor_enrolls_searches_and_every_row_verifies(
    chromium: Browser, gateway: LiveGateway, shots: Path
) -> None:
    tab = open_tab(chromium)
    page = tab.page
    sub = enroll(tab, gateway)
    expect(page.locator("#alg")).to_contain_text("Ed25519")
    page.screenshot(path=shots / "enroll.png", full_page=True)

    page.get_by_role("link", name="Compliance console").click()
    expect(page).to_have_url(f"{gateway.url}/console")
    ready(page)
    expect(page.locator("#who")).to_contain_text(sub)
    expect(page.locator("#pin-state")).to_contain_text("No log key pinned")
    # The server's key is offered, but only the user's press of "Pin" makes it trusted.
    expect(page.locator("#pin-edit")).to_have_attribute("open", "")
    page.get_by_role("button", name="Fill in the key this server serves").click()
    expect(page.get_by_label("Log verifier key (vkey)")).to_have_value(vkey(gateway))
    expect(page.locator("#pin-state")).to_contain_text("No log key pinned")
    page.get_by_role("button", name="Pin this key").click()
    expect(page.locator("#pin-state")).to_contain_text("Pinned by you")
    expect(page.locator("#pin-state")).to_contain_text(vkey(gateway))

    search(page)
    everything = rows(page)
    assert len(everything) >= 4
    assert {r["state"] for r in everything} == {"ok"}, everything
    assert all("Inclusion proof: valid" in r["verification"] for r in everything)
    assert all("Checkpoint signature: valid" in r["verification"] for r in everything)
    types = [r["type"] for r in everything]
    assert types[0] == "gateway.started"
    assert "identity.enrolled" in types and "attestation.issued" in types
    expect(page.locator("#summary")).to_contain_text(f"{len(everything)} verified, 0 failing")
    expect(page.locator("#checkpoint")).to_have_attribute("data-state", "ok")
    expect(page.locator("#checkpoint")).to_contain_text(LOG_NAME)
    page.screenshot(path=shots / "console.png", full_page=True)

    # Filters, typed and submitted from the keyboard: this auditor's own queries.
    page.get_by_role("button", name="Clear filters").click()
    page.get_by_label("Actor").fill(sub)
    page.get_by_label("Event type").fill("audit.query")
    before = shown(page)
    page.get_by_label("Event type").press("Enter")
    wait_shown(page, before)
    mine = rows(page)
    assert mine and all(r["actor"] == sub and r["type"] == "audit.query" for r in mine)
    assert {r["state"] for r in mine} == {"ok"}
    # The second checkpoint is held to the first: the log only grew.
    expect(page.locator("#checkpoint")).to_contain_text("extends the checkpoint of size")

    # Pages of two rows, forward and back, each verified.
    search(page, limit=2)
    first = rows(page)
    assert len(first) == 2 and {r["state"] for r in first} == {"ok"}
    expect(page.get_by_role("button", name="Previous page")).to_be_disabled()
    before = shown(page)
    page.get_by_role("button", name="Next page").click()
    wait_shown(page, before)
    second = rows(page)
    assert len(second) == 2 and {r["state"] for r in second} == {"ok"}
    assert int(second[0]["index"]) > int(first[1]["index"])
    before = shown(page)
    page.get_by_role("button", name="Previous page").click()
    wait_shown(page, before)
    assert [r["index"] for r in rows(page)] == [r["index"] for r in first]

    # Exports are fetched with the DPoP-bound token and saved as files.
    page.get_by_label("Event type").fill("identity.enrolled")
    with page.expect_download() as dl:
        page.get_by_role("button", name="CSV").click()
    csv = Path(dl.value.path()).read_bytes().decode()
    assert csv.startswith("index,time,type,actor,subject,session,leaf_hash\r\n")
    assert sub in csv
    with page.expect_download() as dl:
        page.get_by_role("button", name="FHIR R4 AuditEvent Bundle").click()
    bundle = json.loads(Path(dl.value.path()).read_text())
    assert bundle["resourceType"] == "Bundle" and bundle["entry"]
    assert dl.value.suggested_filename.endswith(".fhir.json")
    expect(page.locator("#status")).to_contain_text("FHIR Bundle export")

    # A reload keeps the key and the pin (IndexedDB) and gets a fresh token with them.
    page.reload()
    ready(page)
    expect(page.locator("#pin-state")).to_contain_text("Pinned by you")
    expect(page.locator("#who")).to_contain_text(sub)
    search(page)
    assert {r["state"] for r in rows(page)} == {"ok"}

    # A phone-sized screen: rows become cards, nothing scrolls sideways.
    phone = tab.context.new_page()
    phone.set_viewport_size(PHONE)
    open_console(phone, gateway)
    search(phone, limit=5)
    assert {r["state"] for r in rows(phone)} == {"ok"}
    phone.screenshot(path=shots / "console-phone.png", full_page=True)
    phone.locator("#results").scroll_into_view_if_needed()
    phone.screenshot(path=shots / "console-phone-results.png")
    fits, wide = phone.evaluate(
        """() => [
            document.documentElement.scrollWidth <= window.innerWidth,
            [...document.querySelectorAll("body *:not(thead *)")]
                .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5)
                .map((e) => `${e.tagName}#${e.id}.${e.className}`),
        ]"""
    )
    assert fits and wide == [], wide
    tab.assert_clean()


def _flip_byte(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[5] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def test_a_tampered_row_and_a_tampered_proof_fail_and_only_they(
    chromium: Browser, gateway: LiveGateway, shots: Path
) -> None:
    tab = open_tab(chromium)
    page = tab.page
    enroll(tab, gateway)
    open_console(page, gateway)
    pin(page, vkey(gateway))
    tampered: dict[str, int] = {}

    def tamper(route: Route) -> None:
        resp = route.fetch()
        body: dict[str, Any] = resp.json()
        with_proofs = [r for r in body["rows"] if r["inclusion_proof"]]
        proof_row, event_row = with_proofs[1], with_proofs[3]
        # One byte of one node of an inclusion proof (under both its names: the console
        # reads `inclusion_proof`, docs/api-changes.md)...
        path = proof_row["inclusion_proof"]
        path[0] = _flip_byte(path[0])
        proof_row["proof"] = path
        # ...and one character of another row's event (its proof untouched).
        actor = event_row["event"]["actor"]
        event_row["event"]["actor"] = actor[:-1] + ("0" if actor[-1] != "0" else "1")
        tampered.update(proof=proof_row["index"], event=event_row["index"])
        route.fulfill(response=resp, json=body)

    page.route("**/v1/audit/events?*", tamper)
    search(page)
    shown_rows = {int(r["index"]): r for r in rows(page)}
    assert len(shown_rows) >= 5
    bad_proof, bad_event = shown_rows[tampered["proof"]], shown_rows[tampered["event"]]
    assert bad_proof["state"] == "fail"
    assert "Inclusion proof: FAILS" in bad_proof["verification"]
    assert "does not lead to the checkpoint's root" in bad_proof["verification"]
    assert "Verification fails" in bad_proof["verification"]
    assert bad_event["state"] == "fail"
    assert "is not the entry in the log" in bad_event["verification"]
    others = [r for i, r in shown_rows.items() if i not in tampered.values()]
    assert {r["state"] for r in others} == {"ok"}
    # The checkpoint itself is genuine: only those two rows fail.
    expect(page.locator("#checkpoint")).to_have_attribute("data-state", "ok")
    expect(page.locator("#summary")).to_contain_text(f"{len(others)} verified, 2 failing")
    failing = page.locator("#rows tbody tr[data-state=fail]")
    expect(failing).to_have_count(2)
    # Not by colour alone: the failing rows say so in words, and are tinted.
    colours = failing.evaluate_all("rs => rs.map(r => getComputedStyle(r).backgroundColor)")
    assert set(colours) == {"rgb(253, 236, 238)"}
    page.screenshot(path=shots / "console-tampered.png", full_page=True)
    tab.assert_clean()


def test_a_wrong_pinned_key_fails_the_checkpoint(
    chromium: Browser, gateway: LiveGateway, shots: Path
) -> None:
    tab = open_tab(chromium)
    page = tab.page
    enroll(tab, gateway)
    open_console(page, gateway)
    # Same log name, another key: what a server signing with a substituted key looks like.
    wrong = Signer.generate(LOG_NAME).vkey
    pin(page, wrong)
    search(page)
    result = rows(page)
    assert result and {r["state"] for r in result} == {"fail"}
    for r in result:
        assert "Checkpoint signature: FAILS" in r["verification"]
        assert "no signature by the pinned key" in r["verification"]
        # The proofs themselves are sound; it is the root they lead to that is unsigned.
        assert "Inclusion proof: valid" in r["verification"]
    expect(page.locator("#checkpoint")).to_have_attribute("data-state", "fail")
    expect(page.locator("#checkpoint")).to_contain_text(f"signed by {LOG_NAME}")
    expect(page.locator("#summary")).to_contain_text(f"0 verified, {len(result)} failing")
    page.screenshot(path=shots / "console-wrong-key.png", full_page=True)

    # Pinning the right key re-checks the same page, with no new request to the server.
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    pin(page, vkey(gateway))
    expect(page.locator("#summary")).to_contain_text(" 0 failing")
    assert {r["state"] for r in rows(page)} == {"ok"}
    assert not [u for u in requests if "/v1/audit/" in u]

    # A key that is not a vkey at all is refused and nothing changes.
    page.get_by_text("Change the pinned key").click()
    page.get_by_label("Log verifier key (vkey)").fill("not-a-key")
    page.get_by_role("button", name="Pin this key").click()
    expect(page.locator("#status")).to_contain_text("not a usable log key")
    expect(page.locator("#pin-state")).to_contain_text(vkey(gateway))
    tab.assert_clean()


def test_no_secret_in_web_storage_and_the_private_key_cannot_be_exported(
    chromium: Browser, gateway: LiveGateway
) -> None:
    tab = open_tab(chromium)
    page = tab.page
    sub = enroll(tab, gateway)
    open_console(page, gateway)
    pin(page, vkey(gateway))
    search(page)  # a token was issued and used
    assert {r["state"] for r in rows(page)} == {"ok"}
    found = page.evaluate(
        """async () => {
        const db = await new Promise((ok, no) => {
            const r = indexedDB.open("telegate");
            r.onsuccess = () => ok(r.result);
            r.onerror = () => no(r.error);
        });
        const all = (name) => new Promise((ok, no) => {
            const s = db.transaction(name).objectStore(name);
            const values = s.getAll();
            values.onsuccess = () => ok(values.result);
            values.onerror = () => no(values.error);
        });
        const [holder] = await all("holder");
        const key = holder.privateKey;
        const exported = [];
        for (const format of ["pkcs8", "jwk", "raw"]) {
            try { await crypto.subtle.exportKey(format, key); exported.push(format); } catch {}
        }
        return {
            localStorage: Object.keys(localStorage),
            sessionStorage: Object.keys(sessionStorage),
            cookie: document.cookie,
            caches: await caches.keys(),
            extractable: key.extractable,
            keyType: key.type,
            usages: key.usages,
            algorithm: key.algorithm.name,
            exported,
            jwk: holder.jwk,
            sub: holder.sub,
            stored: JSON.stringify({
                holder: { ...holder, privateKey: String(key) },
                settings: await all("settings"),
            }),
        };
    }"""
    )
    assert found["localStorage"] == [] and found["sessionStorage"] == []
    assert found["cookie"] == "" and found["caches"] == []
    assert tab.context.cookies() == []
    assert found["extractable"] is False and found["exported"] == []
    assert found["keyType"] == "private" and found["usages"] == ["sign"]
    assert found["algorithm"] == "Ed25519"
    assert found["sub"] == sub and "d" not in found["jwk"]
    # No token anywhere persistent: JWTs start with base64url("{"), "eyJ".
    assert "eyJ" not in found["stored"]
    tab.assert_clean()


def test_rows_name_their_actor_and_subject_with_the_id_beside(
    chromium: Browser, gateway: LiveGateway, shots: Path
) -> None:
    """Compliance staff see who each row's actor and subject are: the name as text (a name
    is whatever its owner typed), the verified id under it; a device by its model."""
    xss = "<img src=x onerror=alert(1)>"
    doctor = enroll_api(
        gateway.url,
        local_invite(gateway.config, "provider", npi="1234567893", display_name=xss),
    )
    invited = Session(doctor).post_json("/v1/invites", {"role": "patient"})
    pat = enroll_api(gateway.url, str(invited["invite"]), display_name="Ada Lovelace")
    # The doctor registers the patient's monitor, on the patient's `devices` consent: a row
    # with the doctor as actor.
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
    grant = {"grantee": doctor.sub, "scopes": ["devices"], "until": until}
    Session(pat).post_json("/v1/consents", grant)
    device_invite = Session(doctor).post_json("/v1/invites", {"role": "device", "patient": pat.sub})
    device = enroll_api(gateway.url, str(device_invite["invite"]), serial="SN-7", model="Cuff 3")

    tab = open_tab(chromium, PHONE)
    page = tab.page
    enroll(tab, gateway)
    open_console(page, gateway)
    pin(page, vkey(gateway))
    search(page, subject=pat.sub)
    found = rows(page)
    assert found and {r["state"] for r in found} == {"ok"}
    table = page.locator("#rows tbody")
    invite_row = table.locator("tr", has_text="identity.invite_created").first
    shows_person(invite_row.locator("td").nth(3), xss, doctor.sub)
    shows_person(invite_row.locator("td").nth(4), "Ada Lovelace", pat.sub)
    device_row = table.locator("tr", has=page.locator(f'.person[data-id="{device.sub}"]')).first
    shows_person(device_row, "Cuff 3", device.sub)
    expect(page.locator("img")).to_have_count(0)
    page.locator("#results").screenshot(path=shots / "console-names-phone.png")
    tab.assert_clean()
