"""``python -m ledger verify [--vkey VKEY] DIR_OR_URL``: the auditor's offline verifier."""

from __future__ import annotations

from .cli import main

# Guarded: the verifier's worker processes re-import the main module.
if __name__ == "__main__":
    raise SystemExit(main())
