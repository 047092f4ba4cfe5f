"""The pure request checks the handlers call (and fuzz/bodies.py, fuzz/oauth.py and
fuzz/query.py drive): what their properties caught, as plain tests."""

from __future__ import annotations

import pytest

from gateway.auth.http import OAuthError, assertion_issuer, parse_form
from gateway.errors import BadRequest
from gateway.vitals.http import check_erasure


@pytest.mark.parametrize(
    "assertion",
    [
        # Found by fuzz/oauth.py: a lone surrogate reached PyJWT, whose str.encode raised
        # UnicodeEncodeError (a 500) instead of a refusal.
        "eyJhbGciOiJFZERTQSJ9.eyJpc3MiOiJwcm92OjAifQ.\udcff",
        "eyJhbGciOiJFZERTQSJ9.eyJpc3MiOiJwcm92OjAifQ.\u00e9",
    ],
)
def test_a_client_assertion_that_is_not_ascii_is_malformed(assertion: str) -> None:
    with pytest.raises(OAuthError) as e:
        assertion_issuer(assertion)
    assert e.value.status == 401 and e.value.extra["error"] == "invalid_client"


def test_a_form_parameter_given_twice_or_in_an_unknown_charset_is_refused() -> None:
    assert parse_form(b"a=1&b=%20x+", None) == {"a": "1", "b": " x "}
    for raw, charset in ((b"a=1&a=2", None), (b"a=1", "no-such-charset"), (b"a=\xff", None)):
        with pytest.raises(OAuthError):
            parse_form(raw, charset)


def test_an_erasure_reference_is_the_whole_string() -> None:
    # fuzz/bodies.py's property: "T-1\n" passed REFERENCE.match, since "$" also matches
    # before a final newline, so a reference outside its documented pattern was recorded.
    for ref in ("T-1\n", "", "x" * 65, "a b"):
        with pytest.raises(BadRequest):
            check_erasure({"reason": "legal_order", "reference": ref})
    assert check_erasure({"reason": "legal_order", "reference": "T-1"}) == ("legal_order", "T-1")
    with pytest.raises(BadRequest):
        check_erasure({"reason": ["legal_order"]})


@pytest.mark.parametrize("name", ["prov:1a2b3c Dr X", "pat:0f0f Jane", "adm:x"])
def test_an_invite_cannot_name_someone_as_an_identifier(name: str) -> None:
    # Found by the fuzz review: an invite's name passed a looser rule than the one a person's
    # own name follows at enrollment, so an admin could make a name that reads as an id.
    from gateway.auth.enroll import check_invite_request

    with pytest.raises(BadRequest, match="identifier"):
        check_invite_request("admin", {"role": "auditor", "display_name": name})


def test_an_invites_name_is_normalized_as_a_declared_one_is() -> None:
    from gateway.auth.enroll import check_invite_request

    _, attrs = check_invite_request(
        "admin", {"role": "auditor", "display_name": "  Ade\u0301le   Dupont "}
    )
    assert attrs["display_name"] == "Ad\u00e9le Dupont"  # NFC, one space, trimmed
