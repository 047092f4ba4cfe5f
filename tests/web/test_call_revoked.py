"""A call in two real browsers when an admin revokes the provider mid-call: the gateway
closes the provider's socket, both pages hang up (media flows between the browsers, so only
they can end it) and say why, and the provider's page does not try to come back."""

from __future__ import annotations

from playwright.sync_api import Browser, expect

from gateway.client import Session
from gateway.client import enroll as enroll_api
from tests.gateway.conftest import LiveGateway
from tests.gateway.idclient import local_invite
from tests.web.people import debug, grant, open_me, patient, provider, schedule, wait_debug
from tests.web.test_call import _join_from_me

REVOKED = "The call was ended: an identity or access token in it was revoked."


def test_revoking_the_provider_ends_the_call_on_both_pages(
    chromium: Browser, gateway: LiveGateway
) -> None:
    prov = provider(chromium, gateway)
    pat = patient(chromium, gateway)
    open_me(pat.page, gateway)
    grant(pat.page, prov.sub, {"call"})
    sid = schedule(prov, gateway, pat.sub)
    _join_from_me(pat, gateway, sid)
    prov.page.locator(f'#queue-list li[data-session="{sid}"]').get_by_role("button").click()
    wait_debug(prov.page, "t.pcState === 'connected'")
    wait_debug(pat.page, "t.pcState === 'connected'")

    admin = Session(enroll_api(gateway.url, local_invite(gateway.config, "admin")))
    admin.post_json("/v1/revocations", {"sub": prov.sub, "reason": "key_compromise"})

    for person in (prov, pat):
        expect(person.page.locator("#status")).to_contain_text(REVOKED)
        expect(person.page.locator("#ended")).to_be_visible()
        wait_debug(person.page, "t.pcState === 'none' || t.pcState === 'closed'")
    assert debug(prov.page, "sockets") == 1  # it hung up; no reconnecting with a dead token
    pat.tab.assert_clean()
