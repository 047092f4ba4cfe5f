"""C2SP signed notes (``ledger.note``): parse, re-encode, open against a known key, vkeys.

Properties: a note that parses re-encodes to exactly the bytes it was parsed from (one
note, one spelling); a note that opens carries a signature by the key that
really verifies; a vkey that parses round-trips. Refusals are ``InvalidNote``, nothing else.
"""

from __future__ import annotations

import sys

from fuzz._harness import instrumented, main, text

with instrumented(__name__):
    from fuzz._keys import LOG
    from ledger.errors import InvalidNote
    from ledger.note import Verifier, open_note, parse_note


def check(data: bytes) -> None:
    try:
        note = parse_note(data)
    except InvalidNote:
        note = None
    if note is not None:
        assert note.encode() == data
    try:
        opened, good = open_note(data, [LOG.verifier])
    except InvalidNote:
        pass
    else:
        assert good == [LOG.verifier]
        msg = opened.text.encode()
        assert any(LOG.verifier.verify(msg, s.signature) for s in opened.signatures)
    try:
        v = Verifier.from_vkey(text(data))
    except InvalidNote:
        return
    again = Verifier.from_vkey(v.vkey)
    assert (again.name, again.alg, again.public) == (v.name, v.alg, v.public)


if __name__ == "__main__":
    main(check)
    sys.exit(0)
