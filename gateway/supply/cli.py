"""``telegate supply verify UNIT``: a unit's custody fetched from a gateway and every proof
checked here, with the log's pinned vkey (docs/supply.md)."""

from __future__ import annotations

import argparse
import base64
import json
import sys
import urllib.parse
from pathlib import Path

__all__ = ["add_parser"]


def cmd_verify(args: argparse.Namespace) -> int:
    from ledger.cli import witness_policy
    from ledger.note import Verifier
    from ledger.verify import HTTPSource

    from ..audit.check import check_consistency, wait_witnessed
    from ..client import Credentials, Session
    from .verify import verify_custody

    creds = Credentials.load(Path(args.credentials))
    if args.server:
        creds = Credentials(args.server, creds.sub, creds.seed, creds.log_vkey)
    log = Verifier.from_vkey(args.vkey or creds.log_vkey)
    witnesses, quorum = witness_policy(args)
    session = Session(creds)
    answer = session.get_json("/v1/supply/items/" + urllib.parse.quote(args.unit, safe=""))
    got = verify_custody(answer, log)
    if witnesses and got.checkpoint is not None:
        # The receipts are proved against the newest checkpoint; the witnesses cosign it a
        # moment later. Wait for a witnessed one that covers it and extends it (as
        # ``telegate audit`` does): then every event shown is in a tree k witnesses saw.
        served = HTTPSource(creds.server.rstrip("/") + "/ledger/")
        _, witnessed = wait_witnessed(
            lambda: served.get("checkpoint"),
            log,
            witnesses,
            quorum,
            got.checkpoint.size,
            wait=args.witness_wait,
        )

        def proof(old: int, new: int) -> list[bytes]:
            d = session.get_public_json(f"/ledger/proof/consistency?old={old}&new={new}")
            return [base64.b64decode(p) for p in d["proof"]]

        check_consistency(got.checkpoint, witnessed.checkpoint, proof)
        names = ", ".join(c.name for c in witnessed.cosignatures)
        print(f"checkpoint {witnessed.checkpoint.size} cosigned by {names}", file=sys.stderr)
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
    from ledger.cli import add_witness_arguments

    sp = sub.add_parser("supply", help="supply-chain custody (docs/supply.md)")
    ssub = sp.add_subparsers(dest="supply_command", required=True)
    v = ssub.add_parser("verify", help="fetch a unit's custody and verify every proof offline")
    v.add_argument("unit", help="GS1 Digital Link or EPC URN of the unit")
    v.add_argument("--credentials", required=True, help="a party's, provider's or auditor's")
    v.add_argument("--server", help="gateway URL (default: the one enrolled with)")
    v.add_argument("--vkey", help="pinned log vkey (default: the one pinned at enrollment)")
    v.add_argument("--json", action="store_true", help="also print the verified answer")
    add_witness_arguments(v)
    v.add_argument(
        "--witness-wait",
        type=float,
        default=10.0,
        metavar="S",
        help="how long to wait for a witnessed checkpoint covering the answer (default 10)",
    )
    v.set_defaults(func=cmd_verify)
