"""The standalone verifier CLI, shared by ``python -m ledger`` and ``telegate verify``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import LedgerError, VerificationFailed
from .note import Verifier
from .verify import DirSource, HTTPSource, TileSource, verify_log

__all__ = ["add_verify_arguments", "main", "run_verify"]


def add_verify_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="exported log directory, or the URL of a /ledger/ endpoint")
    p.add_argument(
        "--vkey",
        help="the log's verifier key (name+hexid+base64), or a file holding it; "
        "default: <source>/vkey (trust on first use: pin it in production)",
    )
    p.add_argument("--origin", help="expected checkpoint origin (default: the key name)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes hashing entries (default: one per CPU)",
    )


class _Bar:
    """A progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.1 and done < total):
            return
        self.last = now
        width = 40
        fill = width * done // max(total, 1)
        sys.stderr.write(f"\rverifying [{'#' * fill}{'.' * (width - fill)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _source(arg: str) -> TileSource:
    if arg.startswith(("http://", "https://")):
        return HTTPSource(arg)
    return DirSource(arg)


def _large(src: TileSource) -> bool:
    # Worker processes cost ~0.2 s to start: only worth it past a few tiles.
    from .checkpoint import Checkpoint
    from .note import parse_note

    try:
        return Checkpoint.parse(parse_note(src.get("checkpoint")).text).size >= 1 << 16
    except LedgerError:
        return False


def run_verify(args: argparse.Namespace) -> int:
    src = _source(args.source)
    try:
        if args.vkey is None:
            vkey = src.get("vkey").decode().strip()
            print(
                "warning: using the vkey served with the log; pin it with --vkey", file=sys.stderr
            )
        elif Path(args.vkey).is_file():
            vkey = Path(args.vkey).read_text().strip()
        else:
            vkey = args.vkey
        verifier = Verifier.from_vkey(vkey)
        workers = max(1, args.workers) if _large(src) else 1
        cp = verify_log(
            src, verifier, origin=args.origin, progress=_Bar(not args.quiet), workers=workers
        )
    except VerificationFailed as e:
        print(f"FAIL {e.where}: {e.reason}", file=sys.stderr)
        return 1
    except LedgerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"OK {cp.origin} size {cp.size} root {cp.text().splitlines()[2]}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ledger", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_verify_arguments(sub.add_parser("verify", help="verify a whole log offline"))
    args = parser.parse_args(argv)
    return run_verify(args)
