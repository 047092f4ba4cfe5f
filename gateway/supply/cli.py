"""``telegate supply verify UNIT``: a unit's custody fetched from a gateway and every proof
checked here, with the log's pinned vkey (docs/supply.md)."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from pathlib import Path

__all__ = ["add_parser"]


def cmd_verify(args: argparse.Namespace) -> int:
    from ledger.note import Verifier

    from ..client import Credentials, Session
    from .verify import verify_custody

    creds = Credentials.load(Path(args.credentials))
    if args.server:
        creds = Credentials(args.server, creds.sub, creds.seed, creds.log_vkey)
    log = Verifier.from_vkey(args.vkey or creds.log_vkey)
    answer = Session(creds).get_json("/v1/supply/items/" + urllib.parse.quote(args.unit, safe=""))
    got = verify_custody(answer, log)
    if args.json:
        print(json.dumps(answer, indent=1))
    print(
        f"{got.item}: {got.status}; {got.events} events verified against checkpoint "
        f"{got.checkpoint_size} of {log.name}; custodian {got.custodian or '-'}",
        file=sys.stderr if args.json else sys.stdout,
    )
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``telegate supply ...`` on the CLI's subcommands."""
    sp = sub.add_parser("supply", help="supply-chain custody (docs/supply.md)")
    ssub = sp.add_subparsers(dest="supply_command", required=True)
    v = ssub.add_parser("verify", help="fetch a unit's custody and verify every proof offline")
    v.add_argument("unit", help="GS1 Digital Link or EPC URN of the unit")
    v.add_argument("--credentials", required=True, help="a party's, provider's or auditor's")
    v.add_argument("--server", help="gateway URL (default: the one enrolled with)")
    v.add_argument("--vkey", help="pinned log vkey (default: the one pinned at enrollment)")
    v.add_argument("--json", action="store_true", help="also print the verified answer")
    v.set_defaults(func=cmd_verify)
