"""What a person does in the pages, as Playwright steps, and the page errors they would see."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Locator, Page, ViewportSize, expect

from tests.gateway.conftest import LiveGateway
from tests.gateway.idclient import local_invite

PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 900}


@dataclass
class Tab:
    """A page and everything that went wrong in it: uncaught errors, CSP violations."""

    page: Page
    context: BrowserContext
    errors: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert self.errors == [], self.errors


def open_tab(browser: Browser, viewport: ViewportSize | None = None) -> Tab:
    context = browser.new_context(viewport=viewport or DESKTOP, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    tab = Tab(page, context)
    page.on("pageerror", lambda e: tab.errors.append(f"uncaught: {e}"))

    def console(msg: Any) -> None:
        # A blocked script or style shows up here; the pages must need neither.
        if "Content Security Policy" in msg.text or "Refused to" in msg.text:
            tab.errors.append(f"csp: {msg.text}")

    page.on("console", console)
    return tab


PREFIX = {"admin": "adm:", "auditor": "aud:", "patient": "pat:", "provider": "prov:"}


#: The name each role says it has when its invite carries none (the page asks for one).
NAMES = {
    "admin": "Adam Admin",
    "auditor": "Ann Auditor",
    "patient": "Pat Patient",
    "provider": "Dr Jane Doe",
}


def enroll(
    tab: Tab, gw: LiveGateway, role: str = "auditor", name: str | None = None, **attrs: Any
) -> str:
    """Open an invite link (``attrs`` go into the invite) and, when the page asks (the
    invite names nobody), say ``name`` (else the role's in NAMES); returns the subject id."""
    code = local_invite(gw.config, role, **attrs)
    page = tab.page
    page.goto(f"{gw.url}/enroll?invite={code}")
    if "display_name" not in attrs:
        field = page.get_by_label("Your name")
        expect(field).to_be_focused()
        field.fill(name or NAMES[role])
        field.press("Enter")
    expect(page.locator("#done")).to_be_visible()
    expect(page.locator("#name")).to_have_text(attrs.get("display_name") or name or NAMES[role])
    expect(page.locator("#role")).to_have_text(role)
    expect(page.locator("#status")).to_contain_text("enrolled as")
    # The single-use code does not stay in the address bar or history.
    assert code not in page.url
    sub = page.locator("#sub").inner_text()
    assert sub.startswith(PREFIX[role])
    return sub


def shows_person(where: Locator, name: str, sub: str) -> None:
    """``where`` names ``sub`` as a person reads it: the name as text (never markup), the
    id beside it as secondary text (smaller, in the muted colour)."""
    who = where.locator(f'.person[data-id="{sub}"]').first
    expect(who.locator(".person-name")).to_have_text(name)
    expect(who.locator(".person-id")).to_have_text(sub)
    looks = who.evaluate(
        """e => [".person-name", ".person-id"].map((c) => {
            const s = getComputedStyle(e.querySelector(c));
            return [parseFloat(s.fontSize), s.color];
        })"""
    )
    (name_size, name_colour), (id_size, id_colour) = looks
    assert id_size < name_size and id_colour != name_colour, looks


def shows_no_name(where: Locator, sub: str) -> None:
    """``where`` shows ``sub`` by its id alone: the gateway gave this viewer no name."""
    expect(where.locator(".person-id", has_text=sub).first).to_be_visible()
    expect(where.locator(f'.person[data-id="{sub}"]')).to_have_count(0)


def ready(page: Page) -> None:
    """Wait until the page has read this browser's key store (its start-up is done)."""
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


def open_console(page: Page, gw: LiveGateway) -> None:
    page.goto(f"{gw.url}/console")
    ready(page)


def pin(page: Page, vkey: str) -> None:
    edit = page.locator("#pin-edit")
    if edit.get_attribute("open") is None:
        page.get_by_text("Change the pinned key").click()
    page.get_by_label("Log verifier key (vkey)").fill(vkey)
    page.get_by_role("button", name="Pin this key").click()
    expect(page.locator("#pin-state")).to_contain_text("Pinned by you")


def search(page: Page, limit: int = 50, **filters: str) -> None:
    """Fill the filters and search; waits until the page is verified and shown."""
    page.get_by_role("button", name="Clear filters").click()
    for name, value in filters.items():
        page.locator(f"#f-{name}").fill(value)
    page.get_by_label("Rows per page").fill(str(limit))
    before = shown(page)
    page.get_by_role("button", name="Search", exact=True).click()
    wait_shown(page, before)


def wait_shown(page: Page, before: str) -> None:
    """Wait until the console shows a page newer than ``before`` (its data-shown count)."""
    page.wait_for_function(
        """(before) => {
            const shown = document.querySelector("#results").dataset.shown ?? "";
            return shown !== before || document.querySelector("#status").dataset.kind === "error";
        }""",
        arg=before,
    )
    assert page.locator("#status").get_attribute("data-kind") != "error", page.locator(
        "#status"
    ).inner_text()


def shown(page: Page) -> str:
    return page.locator("#results").get_attribute("data-shown") or ""


def rows(page: Page) -> list[dict[str, str]]:
    """Every result row: its entry index, state and the text of each cell."""
    out = []
    for tr in page.locator("#rows tbody tr").all():
        cells = tr.locator("td").all_inner_texts()
        out.append(
            {
                "index": tr.get_attribute("data-index") or "",
                "state": tr.get_attribute("data-state") or "",
                "type": cells[2].strip(),
                # The actor's id: the secondary text under a name, or all there is.
                "actor": " ".join(tr.locator("td").nth(3).locator("code").all_inner_texts()),
                "verification": cells[6],
            }
        )
    return out
