"""The standalone verifier CLI, shared by ``python -m ledger`` and ``telegate verify``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .checkpoint import verify_cosignatures
from .errors import InvalidNote, LedgerError, VerificationFailed
from .note import ALG_COSIGNATURE_V1, Verifier, parse_note
from .verify import DirSource, HTTPSource, TileSource, verify_log

__all__ = ["add_verify_arguments", "add_witness_arguments", "main", "run_verify", "witness_policy"]


def add_verify_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="exported log directory, or the URL of a /ledger/ endpoint")
    p.add_argument(
        "--vkey",
        help="the log's verifier key (name+hexid+base64), or a file holding it; "
        "default: <source>/vkey (trust on first use: pin it in production)",
    )
    p.add_argument("--origin", help="expected checkpoint origin (default: the key name)")
    add_witness_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes hashing entries (default: one per CPU)",
    )


def add_witness_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--witness",
        action="append",
        default=[],
        metavar="VKEY",
        help="a witness's cosignature/v1 vkey, or a file holding it (repeatable)",
    )
    p.add_argument(
        "--min-witnesses",
        type=int,
        metavar="K",
        help="refuse a checkpoint cosigned by fewer than K of the --witness keys "
        "(default: all of them)",
    )


def _read_key(arg: str) -> str:
    path = Path(arg)
    return path.read_text().strip() if path.is_file() else arg


def witness_policy(args: argparse.Namespace) -> tuple[list[Verifier], int]:
    """The ``--witness`` keys and the quorum ``--min-witnesses`` asks of them.

    Raises InvalidNote for a key that is not a cosignature/v1 vkey, LedgerError for a quorum
    the keys cannot meet."""
    witnesses = [Verifier.from_vkey(_read_key(w)) for w in args.witness]
    if any(w.alg != ALG_COSIGNATURE_V1 for w in witnesses):
        raise InvalidNote("--witness takes cosignature/v1 (type 0x04) vkeys")
    names = {w.name for w in witnesses}
    k = len(names) if args.min_witnesses is None else args.min_witnesses
    if not 0 <= k <= len(names):
        raise LedgerError(f"--min-witnesses {k} cannot be met by {len(names)} --witness key(s)")
    return witnesses, k


class _Pinned:
    """A source whose checkpoint is fixed: the note whose cosignatures are reported is the
    one verified, however often the log moves on meanwhile."""

    def __init__(self, src: TileSource, checkpoint: bytes) -> None:
        self.src = src
        self.checkpoint = checkpoint

    def get(self, path: str) -> bytes:
        return self.checkpoint if path == "checkpoint" else self.src.get(path)


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
        else:
            vkey = _read_key(args.vkey)
        verifier = Verifier.from_vkey(vkey)
        witnesses, k = witness_policy(args)
        try:
            pinned = _Pinned(src, src.get("checkpoint"))
        except LedgerError as e:
            raise VerificationFailed("checkpoint", str(e)) from e
        workers = max(1, args.workers) if _large(pinned) else 1
        cp = verify_log(
            pinned,
            verifier,
            origin=args.origin,
            progress=_Bar(not args.quiet),
            workers=workers,
            witnesses=witnesses,
            min_witnesses=k,
        )
    except VerificationFailed as e:
        print(f"FAIL {e.where}: {e.reason}", file=sys.stderr)
        return 1
    except LedgerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    line = f"OK {cp.origin} size {cp.size} root {cp.text().splitlines()[2]}"
    if witnesses:
        cosigs = verify_cosignatures(parse_note(pinned.checkpoint), witnesses)
        line += f" cosigned by {len(cosigs)} of {len(witnesses)} witnesses (at least {k} needed)"
    print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ledger", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_verify_arguments(sub.add_parser("verify", help="verify a whole log offline"))
    args = parser.parse_args(argv)
    return run_verify(args)
