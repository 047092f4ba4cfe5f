"""tlog-witness add-checkpoint requests as the witness reads them (``ledger.witness``).

Properties: a request that parses is rebuilt byte for byte by the log's own encoder
(``add_checkpoint_body``); every
decision on it is a ``WitnessRefusal`` or an acceptance whose cosigned note verifies as
witnessed by this witness; a malformed body is refused with ``MalformedRequest``.
"""

from __future__ import annotations

import sys

from fuzz._harness import instrumented, main

with instrumented(__name__):
    from fuzz._keys import LOG, ORIGIN, WITNESS, root
    from ledger.checkpoint import verify_witnessed
    from ledger.cosigning import add_checkpoint_body
    from ledger.witness import (
        LogState,
        MalformedRequest,
        Witness,
        WitnessedLog,
        WitnessRefusal,
        parse_add_checkpoint,
    )

WITNESSING = Witness(WITNESS, [WitnessedLog(ORIGIN, (LOG.verifier,))])
STATES = (LogState(), LogState(3, root(3), 100))
NOW = 1_800_000_000


def check(data: bytes) -> None:
    try:
        req = parse_add_checkpoint(data)
    except MalformedRequest:
        return
    if req.old_size or not req.proof:  # the log never builds a proof from 0; check() refuses it
        assert add_checkpoint_body(req.old_size, req.proof, req.note) == data
    for state in STATES:
        try:
            accepted = WITNESSING.check(req, state)
        except WitnessRefusal:
            continue
        cosigned = WITNESSING.cosign(accepted, state, NOW)
        assert cosigned.state.size == req.checkpoint.size >= state.size
        witnessed = verify_witnessed(cosigned.note, LOG.verifier, [WITNESS.verifier], 1)
        assert witnessed.checkpoint == req.checkpoint


if __name__ == "__main__":
    main(check)
    sys.exit(0)
