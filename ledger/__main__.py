"""``python -m ledger verify [--vkey VKEY] DIR_OR_URL``: the auditor's offline verifier."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
