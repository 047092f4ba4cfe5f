"""A witness's answers as the log reads them (``ledger.cosigning``): the 200 body of
cosignature lines, the 409 body of a size, and lines kept beside a checkpoint.

Properties: an accepted answer yields a line by the pinned witness that makes the
checkpoint verify as witnessed; a size body that parses is exactly ``f"{size}\\n"``;
appending lines keeps a note that parses with the same text. Refusals are
``BadWitnessAnswer`` (answers) or ``InvalidNote`` (lines), nothing else.
"""

from __future__ import annotations

import sys

from fuzz._harness import instrumented, main

with instrumented(__name__):
    from fuzz._keys import LOG, WITNESS, checkpoint_note
    from ledger.checkpoint import verify_witnessed
    from ledger.cosigning import (
        BadWitnessAnswer,
        accept_cosignature,
        parse_size_body,
        with_cosignatures,
    )
    from ledger.errors import InvalidNote
    from ledger.note import parse_note

NOTE = checkpoint_note(5)


def check(data: bytes) -> None:
    try:
        line, ts = accept_cosignature(NOTE, data, WITNESS.verifier)
    except BadWitnessAnswer:
        pass
    else:
        witnessed = verify_witnessed(
            with_cosignatures(NOTE, [line]), LOG.verifier, [WITNESS.verifier], 1
        )
        assert [c.timestamp for c in witnessed.cosignatures] == [ts]
    try:
        size = parse_size_body(data)
    except BadWitnessAnswer:
        pass
    else:
        assert f"{size}\n".encode() == data
    try:
        kept = with_cosignatures(NOTE, [data])
    except InvalidNote:
        return
    assert parse_note(kept).text == parse_note(NOTE).text


if __name__ == "__main__":
    main(check)
    sys.exit(0)
