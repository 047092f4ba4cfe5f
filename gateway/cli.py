"""``telegate``: serve the gateway, manage keys, export and verify the ledger.

A thin shell over library functions; every failure ends in a one-line ``error:`` message and
a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.atomic import write_atomic
from ledger.cli import add_verify_arguments, add_witness_arguments, run_verify, witness_policy
from ledger.errors import LedgerError, StoreLocked
from ledger.export import export_log
from ledger.pgstore import PGStore
from ledger.store import LogStore, SQLiteStore

from . import __version__
from .config import Config
from .errors import GatewayError
from .ledger_keys import init_log_key, load_log_key

if TYPE_CHECKING:
    from .db import Database

__all__ = ["main"]


def _config(args: argparse.Namespace) -> Config:
    return Config.load(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        data_dir=getattr(args, "data_dir", None),
        database_url=getattr(args, "database_url", None),
        redis_url=getattr(args, "redis_url", None),
        mqtt_url=getattr(args, "mqtt_url", None),
        drain_seconds=getattr(args, "drain_seconds", None),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from .app import create_app
    from .limits import memtrace, server_args
    from .observability import configure_logging
    from .shared.drain import serve

    config = _config(args)
    config.check_serving()
    configure_logging(config.log_level)
    if config.database_url is not None:
        _check_schema(config)  # a one-line refusal here, before anything opens
        _check_alone(config)  # likewise beside another replica when either lacks Redis
    _init_key_dir(config)
    url = f"http://{config.host}:{config.port}/"
    print(f"telegate {__version__} on {url} (data: {config.data_dir})")
    # Not web.run_app: a SIGTERM drains first (gateway/shared/drain.py). Header sizes and
    # the slow-head deadline are the server's (gateway/limits).
    limits = server_args(config)
    app = create_app(config)
    if (trace := memtrace.from_env(os.environ, config.data_dir)) is not None:
        memtrace.setup(app, trace)  # debug only: TELEGATE_TRACEMALLOC=1 (bench/soak.py)
    return serve(app, config.host, config.port, config.drain_seconds, **limits)


def _init_key_dir(config: Config) -> None:
    """Create the log key and the first attestation signing key if the key dir has none,
    under an exclusive lock on the dir. Replicas sharing a key dir may start together:
    unlocked, each made a signing key of its own and kept signing with it while
    ``keys.json`` named only the last one written (its tokens then verify nowhere), and
    one could read ``log.skey`` created but not yet written."""
    import fcntl

    from .auth.keys import KeyRing

    config.key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(config.key_dir / ".init.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd closes
        init_log_key(config.key_dir, config.log_origin)
        KeyRing.open(
            config.key_dir / "signing",
            int(time.time()),
            alg=config.signing_alg,
            keep_seconds=config.token_lifetime + config.clock_skew,
        )
    finally:
        os.close(fd)


def _check_schema(config: Config) -> None:
    from .db import Database

    db = Database.from_config(config)
    try:
        db.check()  # also refuses a database an unfinished `db copy` left
    finally:
        db.close()


def _check_alone(config: Config) -> None:
    """Refuse (NotAlone) a replica that could not share its state with one already serving
    the database; the app checks again once its own heartbeat row is written."""
    from .db import Database
    from .replicas.heartbeat import refuse_unshared
    from .replicas.store import Replica, ReplicaStore

    db = Database.from_config(config)
    try:
        now = int(time.time())
        me = Replica("", now, now, bool(getattr(config, "redis_url", None)))
        refuse_unshared(ReplicaStore(db.open("replicas")), me, now)
    finally:
        db.close()


def _check_copied(db: Database) -> None:
    """Refuse a database that a ``db copy`` began filling and did not finish."""
    from .db.copy import check_finished

    if db.url is not None:
        check_finished(db.engine(""), db.describe())


def cmd_db_copy(args: argparse.Namespace) -> int:
    from .db.copy import copy
    from .db.url import redact

    config = _config(args)

    def progress(done: int, total: int) -> None:
        print(f"ledger: {done}/{total} entries copied", file=sys.stderr, flush=True)

    report = copy(config.data_dir, args.to, progress)
    for table, n in sorted(report.rows.items()):
        print(f"{table}: {n} rows")
    print(f"ledger: {report.size} entries, root {report.root.hex() or '-'}")
    print(f"copied {config.data_dir} into {redact(args.to)}: checked", file=sys.stderr)
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from .db import Database

    config = _config(args)
    db = Database.from_config(config)
    try:
        _check_copied(db)
        if args.db_command == "upgrade":
            done = db.upgrade()
            for name, done_rev in done.items():
                print(f"{name}: {done_rev}")
            print(f"upgraded {db.describe()}", file=sys.stderr)
        else:
            from .db.migrate import head

            for name, rev in db.current().items():
                want = head(name)
                if rev == want:
                    print(f"{name}: {rev} (head)")
                elif rev is None and db.embedded:
                    # Embedded stores are made (and upgraded) by the gateway when it first
                    # opens them: nothing for the operator to run.
                    print(f"{name}: none (made when the gateway first uses it)")
                else:
                    at = "none" if rev is None else rev
                    print(f"{name}: {at} (behind: run `telegate db upgrade` for {want})")
    finally:
        db.close()
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.action == "rotate":
        from .auth.keys import KeyRing

        now = int(time.time())
        # On a shared database the rotation is published there at once (public parts
        # only), so replicas on other hosts verify the new key within a second.
        db = store = None
        if config.database_url is not None:
            from .auth.store import IdentityStore
            from .db import Database

            db = Database.from_config(config)
            store = IdentityStore(db.open("identity"))
        try:
            ring = KeyRing.open(
                config.key_dir / "signing",
                now,
                alg=config.signing_alg,
                keep_seconds=config.token_lifetime + config.clock_skew,
                publisher=store,
            )
            key = ring.rotate(now)
        finally:
            if store is not None:
                store.close()
            if db is not None:
                db.close()
        # A running gateway notices keys.json changed and signs with the new key; the old
        # one stays in the JWKS until every token it signed has expired.
        print(
            f"new attestation signing key {key.kid} ({key.alg}); "
            f"{len(ring.keys) - 1} older key(s) kept for verification"
        )
        return 0
    if args.action == "init":
        signer, created = init_log_key(config.key_dir, config.log_origin)
        state = "created" if created else "exists"
        print(f"log key {state}: {config.key_dir / 'log.skey'}", file=sys.stderr)
    else:
        signer = load_log_key(config.key_dir, config.log_origin)
    print(signer.vkey)
    return 0


def cmd_ledger_export(args: argparse.Namespace) -> int:
    config = _config(args)
    signer = load_log_key(config.key_dir, config.log_origin)
    # A reader needs no writer lock, so this works while the gateway runs.
    store: LogStore = (
        PGStore(config.database_url, writer=False)
        if config.database_url
        else SQLiteStore(config.db_path, writer=False)
    )
    out = Path(args.dir)
    try:
        # The vkey first: an export stopped at any point (the checkpoint is written last) is
        # then the previous export or this one, each verifiable from the directory alone.
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "vkey", (signer.vkey + "\n").encode())
        cp = export_log(store, out)
    finally:
        store.close()
    print(f"exported {cp.size} entries of {cp.origin} to {out}")
    return 0


def cmd_invite(args: argparse.Namespace) -> int:
    from .auth.enroll import hash_code, new_code
    from .auth.store import IdentityStore, Invite
    from .db import Database

    config = _config(args)
    if not 60 <= args.ttl <= config.invite_max_ttl:
        print(f"error: --ttl must be 60..{config.invite_max_ttl} seconds", file=sys.stderr)
        return 2
    db = Database.from_config(config)
    store = IdentityStore(db.open("identity"))
    try:
        now = int(time.time())
        code = new_code()
        # Local bootstrap: whoever can run this owns the data directory. The ledger records
        # the invite when it is redeemed (identity.enrolled, invited_by "cli:local").
        invite = Invite(args.role, "cli:local", now, now + args.ttl, {})
        store.create_invite(hash_code(code), invite)
    finally:
        store.close()
        db.close()
    print(code)
    print(
        f"single-use admin invite, valid for {args.ttl} s: redeem it with POST /v1/enroll",
        file=sys.stderr,
    )
    return 0


def cmd_ledger_reindex(args: argparse.Namespace) -> int:
    from .audit.index import IndexBusy, rebuild_index

    config = _config(args)
    stopped = "the gateway is running; stop it before reindexing"
    store: LogStore
    if config.database_url:
        # Other replicas may go on appending: the index is this data dir's own, and the
        # gateway catches it up from the shared log before its next answer.
        store = PGStore(config.database_url, writer=False)
    else:
        try:
            store = SQLiteStore(config.db_path)
        except StoreLocked as e:
            raise StoreLocked(stopped) from e
    try:
        # A gateway holds the index's lock while it runs, on either backend.
        size, differing = rebuild_index(store, config.data_dir / "audit-index.db")
    except IndexBusy as e:
        raise IndexBusy(stopped) from e
    finally:
        store.close()
    print(f"reindexed {size} entries")
    if differing:
        shown = ", ".join(map(str, differing[:20]))
        more = f" and {len(differing) - 20} more" if len(differing) > 20 else ""
        print(
            f"warning: the old index was wrong or missing for entries {shown}{more}",
            file=sys.stderr,
        )
        return 3
    return 0


def cmd_enroll(args: argparse.Namespace) -> int:
    from .client import enroll

    out = Path(args.out)
    if out.exists():
        print(f"error: {out} exists; choose another --out", file=sys.stderr)
        return 2
    creds = enroll(args.server, args.invite)
    creds.save(out)
    print(f"enrolled as {creds.sub}; credentials in {out} (keep them private)")
    print(f"log vkey pinned: {creds.log_vkey}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from ledger.checkpoint import Checkpoint, open_checkpoint
    from ledger.note import Verifier
    from ledger.verify import HTTPSource

    from .audit.check import AuditForked, check_consistency, check_page, wait_witnessed
    from .client import Credentials, Session

    creds = Credentials.load(Path(args.credentials))
    if args.server:
        creds = Credentials(args.server, creds.sub, creds.seed, creds.log_vkey)
    log = Verifier.from_vkey(args.vkey or creds.log_vkey)
    witnesses, quorum = witness_policy(args)
    session = Session(creds)
    state = Path(args.state) if args.state else Path(args.credentials).with_suffix(".seen")
    seen = seen_note = None
    if state.exists():
        seen_note = state.read_bytes()
        seen = open_checkpoint(seen_note, log).checkpoint

    def proof(old: int, new: int) -> list[bytes]:
        d = session.get_public_json(f"/ledger/proof/consistency?old={old}&new={new}")
        # ``proof``: a gateway before 0.2.0 also names it so (docs/api-changes.md).
        hashes = d["consistency_proof"] if "consistency_proof" in d else d["proof"]
        return [base64.b64decode(p) for p in hashes]

    def advance(note: bytes, cp: Checkpoint) -> None:
        # Every checkpoint must extend the last one seen; keep both if it does not.
        nonlocal seen, seen_note
        if seen is not None and seen_note is not None:
            try:
                check_consistency(seen, cp, proof, evidence=(seen_note, note))
            except AuditForked as e:
                fork = state.with_suffix(".fork")
                seen_before, served = e.evidence
                fork.write_bytes(
                    b"--- checkpoint seen before ---\n"
                    + seen_before
                    + b"--- checkpoint served now ---\n"
                    + served
                )
                raise AuditForked(
                    f"{e}; both signed checkpoints saved to {fork}", e.evidence
                ) from e
        if seen is None or cp.size >= seen.size:
            seen, seen_note = cp, note
            # Whole or not at all: a torn file would lose the anchor of the fork check.
            write_atomic(state, note, 0o600)

    query = {
        k: getattr(args, k)
        for k in ("type", "actor", "subject", "session", "since", "until")
        if getattr(args, k)
    }
    rows: list[dict[str, object]] = []
    cursor = None
    while True:
        q = dict(query, limit=str(args.page_size))
        if cursor is not None:
            q["cursor"] = cursor
        page = session.get_json("/v1/audit/events?" + urllib.parse.urlencode(q))
        cp = check_page(page, log)
        advance(str(page["checkpoint"]).encode(), cp)
        rows += page["rows"]
        cursor = page["next"]
        if cursor is None or len(rows) >= args.max_rows:
            break
    if witnesses and seen is not None:
        # The pages are proved against the newest checkpoint; the witnesses cosign it a
        # moment later. Wait for a witnessed one that extends it: then every row shown is
        # in a tree k witnesses saw, and no other history can be shown to them.
        served = HTTPSource(creds.server.rstrip("/") + "/ledger/")
        note, witnessed = wait_witnessed(
            lambda: served.get("checkpoint"),
            log,
            witnesses,
            quorum,
            seen.size,
            wait=args.witness_wait,
        )
        advance(note, witnessed.checkpoint)
        names = ", ".join(c.name for c in witnessed.cosignatures)
        print(f"checkpoint {witnessed.checkpoint.size} cosigned by {names}", file=sys.stderr)
    print(
        f"verified {len(rows)} rows against checkpoint {seen.size if seen else 0} of {log.name}",
        file=sys.stderr,
    )
    if args.format == "json":
        print(json.dumps(rows, indent=1))
    elif args.format == "fhir":
        from .audit.fhir import audit_event

        entries = []
        for r in rows:
            assert isinstance(r["index"], int) and isinstance(r["event"], dict)
            entries.append({"resource": audit_event(r["index"], str(r["leaf_hash"]), r["event"])})
        print(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    elif args.format == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(["index", "time", "type", "actor", "subject", "session"])
        for r in rows:
            ev = r["event"]
            assert isinstance(ev, dict)
            w.writerow(
                [
                    r["index"],
                    *(ev.get(k, "") for k in ("time", "type", "actor", "subject", "session")),
                ]
            )
    else:
        for r in rows:
            ev = r["event"]
            assert isinstance(ev, dict)
            print(
                f"{r['index']:>8}  {ev.get('time', '')}  {ev.get('type', ''):<22} "
                f"{ev.get('actor', ''):<38} {ev.get('subject', '') or ''}"
            )
    return 0


def cmd_witness(args: argparse.Namespace) -> int:
    from .witness.config import WitnessConfig
    from .witness.keys import init_witness_key

    config = WitnessConfig.load(args.config)
    signer, created = init_witness_key(config.key_path, config.name)
    state = "created" if created else "exists"
    print(f"witness key {state}: {config.key_path}", file=sys.stderr)
    print(signer.vkey, flush=True)
    if args.action == "init":
        return 0
    from aiohttp import web

    from .observability import configure_logging
    from .witness.app import create_app

    configure_logging("INFO")
    logs = ", ".join(log.origin for log in config.logs) or "none (every request gets 404)"
    url = f"http://{config.host}:{config.port}/"
    print(f"telegate witness {config.name} on {url}; logs: {logs}", file=sys.stderr)
    web.run_app(create_app(config), host=config.host, port=config.port, access_log=None, print=None)
    return 0


def cmd_pseudonym(args: argparse.Namespace) -> int:
    """Print ``<address> <pseudonym>`` per address: what ``auth.refused_summary`` and
    ``auth.refused`` events name as ``source`` for it (docs/audit.md). Needs the key
    directory of the gateway that wrote them."""
    from .auth.sources import load_pseudonym_key, pseudonym_of

    key = load_pseudonym_key(_config(args).key_dir, create=False)
    for address in args.address:
        try:
            print(address, pseudonym_of(key, address))
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    return 0


def cmd_incentives_verify(args: argparse.Namespace) -> int:
    """Re-check evaluations offline from the patients' disclosures (docs/incentives.md):
    one ``ok`` line each, or the first that fails and exit status 1."""
    from ledger.note import Verifier

    from .incentives.recheck import MAX_DISCLOSURE, RecheckFailed, check_credential, recheck
    from .jsonio import loads

    vkey = Path(args.vkey).read_text() if Path(args.vkey).is_file() else args.vkey
    log = Verifier.from_vkey(vkey)
    if args.credential is not None and (args.jwks is None or len(args.disclosure) != 1):
        print("error: --credential needs --jwks and one disclosure", file=sys.stderr)
        return 2
    for name in args.disclosure:
        raw = Path(name).read_bytes()
        if len(raw) > MAX_DISCLOSURE:
            print(f"{name}: refused: larger than {MAX_DISCLOSURE} bytes", file=sys.stderr)
            return 1
        try:
            r = recheck(loads(raw, name), log)
        except RecheckFailed as e:
            print(f"{name}: refused: {e}", file=sys.stderr)
            return 1
        print(
            f"{name}: ok: program {r.program} ({r.name}) period {r.period}: result "
            f"{json.dumps(r.result)}, {r.points} points, ledger entry {r.index} in a "
            f"checkpoint of size {r.checkpoint_size}"
        )
        if args.credential is not None:
            try:
                jwks = loads(args.jwks.read_bytes(), str(args.jwks))
                check_credential(args.credential.read_text(), jwks, r)
            except RecheckFailed as e:
                print(f"{args.credential}: refused: {e}", file=sys.stderr)
                return 1
            print(f"{args.credential}: ok: signed by a key of the JWKS, names this evaluation")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="telegate", description=__doc__)
    p.add_argument("--version", action="version", version=f"telegate {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def data_dir(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--data-dir", type=Path, help="data directory (TELEGATE_DATA_DIR)")

    def database_url(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--database-url",
            metavar="URL",
            help="postgresql://user@host:port/db for the stores (TELEGATE_DATABASE_URL); "
            "default: SQLite files in the data directory",
        )

    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--host", help="listen address (TELEGATE_HOST)")
    s.add_argument("--port", type=int, help="listen port (TELEGATE_PORT)")
    data_dir(s)
    database_url(s)
    s.add_argument(
        "--redis-url",
        metavar="URL",
        help="redis://host:port/db for the state replicas share (TELEGATE_REDIS_URL); "
        "default: in process, one gateway process",
    )
    s.add_argument(
        "--mqtt-url",
        metavar="URL",
        help="mqtt://host:port of the broker devices publish vitals to (TELEGATE_MQTT_URL); "
        "default: no MQTT",
    )
    s.add_argument(
        "--drain-seconds",
        type=float,
        metavar="S",
        help="on SIGTERM, how long to finish in-flight requests before exiting "
        "(TELEGATE_DRAIN_SECONDS, default 20)",
    )
    s.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="the stores' schema (Alembic migrations)")
    dsub = db.add_subparsers(dest="db_command", required=True)
    for name, text in (
        ("upgrade", "migrate every store to this release's schema"),
        ("current", "print each store's schema revision"),
    ):
        dp = dsub.add_parser(name, help=text)
        data_dir(dp)
        database_url(dp)
        dp.set_defaults(func=cmd_db)
    dc = dsub.add_parser(
        "copy", help="move a stopped embedded deployment into an empty PostgreSQL database"
    )
    data_dir(dc)
    dc.add_argument(
        "--to", required=True, metavar="URL", help="postgresql://user@host:port/db (empty)"
    )
    dc.set_defaults(func=cmd_db_copy)

    k = sub.add_parser(
        "keys",
        help="init/show the log key; rotate the attestation signing key",
    )
    k.add_argument("action", choices=["init", "show", "rotate"])
    data_dir(k)
    database_url(k)  # rotate publishes the new key's public part there
    k.set_defaults(func=cmd_keys)

    inv = sub.add_parser("invite", help="create a single-use invite locally (bootstrap)")
    inv.add_argument("role", choices=["admin", "auditor"])
    inv.add_argument("--ttl", type=int, default=3600, help="validity in seconds (default 3600)")
    data_dir(inv)
    database_url(inv)  # the invite must land where the gateway keeps identities
    inv.set_defaults(func=cmd_invite)

    led = sub.add_parser("ledger", help="ledger maintenance")
    lsub = led.add_subparsers(dest="ledger_command", required=True)
    e = lsub.add_parser("export", help="write a static C2SP tlog-tiles tree")
    e.add_argument("dir", help="output directory")
    data_dir(e)
    database_url(e)
    e.set_defaults(func=cmd_ledger_export)

    ri = lsub.add_parser("reindex", help="rebuild the audit index from the ledger and check it")
    data_dir(ri)
    database_url(ri)
    ri.set_defaults(func=cmd_ledger_reindex)

    en = sub.add_parser("enroll", help="redeem an invite with a new key; write credentials")
    en.add_argument("--server", required=True, help="gateway URL, e.g. https://gw.example")
    en.add_argument("--invite", required=True)
    en.add_argument("--out", required=True, help="credentials file to create (mode 0600)")
    en.set_defaults(func=cmd_enroll)

    au = sub.add_parser("audit", help="query the audit trail and verify every proof")
    au.add_argument("--credentials", required=True, help="an auditor's credentials file")
    au.add_argument("--server", help="gateway URL (default: the one enrolled with)")
    au.add_argument("--vkey", help="pinned log vkey (default: the one pinned at enrollment)")
    au.add_argument(
        "--state", help="where the last seen checkpoint is kept (default: <credentials>.seen)"
    )
    for f in ("type", "actor", "subject", "session", "since", "until"):
        au.add_argument(f"--{f}")
    au.add_argument("--format", choices=["table", "json", "csv", "fhir"], default="table")
    au.add_argument("--page-size", type=int, default=500)
    add_witness_arguments(au)
    au.add_argument(
        "--witness-wait",
        type=float,
        default=10.0,
        metavar="S",
        help="how long to wait for a witnessed checkpoint covering the answer (default 10)",
    )
    au.add_argument("--max-rows", type=int, default=100_000)
    au.set_defaults(func=cmd_audit)

    ps = sub.add_parser(
        "pseudonym", help="the ledger's pseudonym of an IP address (anonymous refusals)"
    )
    ps.add_argument("address", nargs="+", help="IPv4 or IPv6 address (an IPv6 one: its /64)")
    data_dir(ps)
    ps.set_defaults(func=cmd_pseudonym)

    w = sub.add_parser("witness", help="run a C2SP tlog-witness that cosigns other logs")
    w.add_argument("action", choices=["init", "serve"], help="init: create the key, print vkey")
    w.add_argument("--config", required=True, type=Path, help="witness TOML file")
    w.set_defaults(func=cmd_witness)

    from .devicekit import simulate

    dv = sub.add_parser("device", help="device tools (docs/mqtt.md, Device SDK)")
    dvsub = dv.add_subparsers(dest="device_command", required=True)
    sim = dvsub.add_parser("simulate", help="drive simulated monitoring devices")
    simulate.add_arguments(sim)
    sim.set_defaults(func=simulate.command)
    inc = sub.add_parser("incentives", help="incentive programs (docs/incentives.md)")
    isub = inc.add_subparsers(dest="incentives_command", required=True)
    iv = isub.add_parser(
        "verify",
        help="re-run a program's rule on a patient's disclosed aggregates and check the "
        "commitment, the result and the entry on the log, offline",
    )
    iv.add_argument("disclosure", nargs="+", help="JSON of GET /v1/programs/{id}/evaluations/{k}")
    iv.add_argument("--vkey", required=True, help="the log's verifier key, or a file holding it")
    iv.add_argument(
        "--credential",
        type=Path,
        help="a reward credential (SD-JWT, no key binding) to check against the disclosure",
    )
    iv.add_argument("--jwks", type=Path, help="the issuer's JWKS (/.well-known/jwks.json)")
    iv.set_defaults(func=cmd_incentives_verify)

    v = sub.add_parser("verify", help="verify a whole log offline (directory or URL)")
    add_verify_arguments(v)
    v.set_defaults(func=run_verify)

    from .supply.cli import add_parser as add_supply_parser

    add_supply_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        rc: int = args.func(args)
    except (GatewayError, LedgerError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
