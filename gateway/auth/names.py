"""Display names for the people (and devices) a page shows, and what a self-declared name
may be.

Every answer that lists people carries one ``names`` object beside its rows, ``{id: name}``,
holding only the ids the caller is entitled to see named; an id without a name there is
shown as the id. The rows themselves keep ids only, so a row that is a ledger event (or
mirrors one) stays exactly as proved. Names are PHI: they live in the identity store and
reach the ledger only as salted commitments (``display_name_commitment``).

Who may see whose name is decided by each endpoint from the rows it already answers with
(a patient: the providers on their consents, calls and access report; a provider: the
patients of their calls and waiting room, and of the active consents naming them; an
auditor: everyone on a console page). :func:`names_of` only looks them up.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from ..appkeys import AUTHORITY
from ..errors import BadRequest

__all__ = ["MAX_NAME", "check_display_name", "names_of"]

#: The longest display name, in characters (the same bound as an invite's display_name).
MAX_NAME = 128

# Letters and marks of any script (Devanagari vowel signs are marks), digits, spaces and the
# punctuation of names ("Dr. Jane O'Neil-Smith"). No markup characters, no control or format
# characters (a right-to-left override would let a name show as something else), nothing
# that reads as a subject id.
_PUNCTUATION = frozenset(" .,'\u2019-()/:@+")  # \u2019: the typographic apostrophe
_CATEGORIES = ("L", "M", "N")
_LOOKS_LIKE_ID = re.compile(r"(adm|prov|pat|dev|aud|sup|gw|role)\s*:", re.IGNORECASE)


def check_display_name(value: Any) -> str:
    """A name a person declares for themself at enrollment: NFC-normalized, trimmed, runs
    of spaces made one, 1-128 plain characters. Raises BadRequest."""
    if not isinstance(value, str):
        raise BadRequest("display_name is a string")
    name = " ".join(unicodedata.normalize("NFC", value).split())
    plain = all(c in _PUNCTUATION or unicodedata.category(c)[0] in _CATEGORIES for c in name)
    if not name or len(name) > MAX_NAME or not plain:
        raise BadRequest(
            f"display_name must be 1-{MAX_NAME} letters, digits, spaces or . , ' - ( ) / : @ +"
        )
    if _LOOKS_LIKE_ID.match(name):
        raise BadRequest("display_name must not look like an identifier")
    return name


async def names_of(app: web.Application, ids: Iterable[str | None]) -> dict[str, str]:
    """``{id: display name}`` of those of ``ids`` that have one (a device: its model), in
    one identity-store query. The caller has already decided these ids are entitled."""
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    return await asyncio.to_thread(app[AUTHORITY].store.display_names, wanted)
