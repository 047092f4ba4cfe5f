"""C2SP checkpoints and cosignatures (``ledger.checkpoint``).

Properties: a checkpoint body that parses encodes back to exactly the same text; a note
that opens gives cosignatures only by the witness asked about; a signed checkpoint that
opens under the log key, and carries no invalid line by the witness, can be cosigned, and
the cosigned note verifies as witnessed with the witness's timestamp. Refusals are
``InvalidNote`` or ``InvalidCheckpoint``.
"""

from __future__ import annotations

import sys

from fuzz._harness import instrumented, main

with instrumented(__name__):
    from fuzz._keys import LOG, ORIGIN, WITNESS
    from ledger.checkpoint import (
        Checkpoint,
        cosign,
        open_checkpoint,
        verify_cosignatures,
        verify_witnessed,
    )
    from ledger.errors import InvalidCheckpoint, InvalidNote

NOW = 1_800_000_000


def check(data: bytes) -> None:
    try:
        body = data.decode("utf-8")
        cp = Checkpoint.parse(body)
    except (UnicodeDecodeError, InvalidCheckpoint):
        pass
    else:
        assert cp.text() == body, "a checkpoint has one spelling"
    try:
        signed = open_checkpoint(data, LOG.verifier)
    except (InvalidNote, InvalidCheckpoint):
        return
    assert signed.checkpoint.origin == ORIGIN
    try:
        found = verify_cosignatures(signed.note, [WITNESS.verifier], now=NOW)
    except InvalidNote:
        found = None
    if found is None:
        return  # an invalid line by the witness: verify_witnessed refuses the note, as told
    assert all(c.name == WITNESS.name and c.timestamp <= NOW for c in found)
    try:
        cosigned = cosign(data, WITNESS, NOW)
    except InvalidNote:
        return  # one signature too many to add another
    witnessed = verify_witnessed(cosigned, LOG.verifier, [WITNESS.verifier], 1)
    assert witnessed.checkpoint == signed.checkpoint
    assert NOW in {c.timestamp for c in witnessed.cosignatures}


if __name__ == "__main__":
    main(check)
    sys.exit(0)
