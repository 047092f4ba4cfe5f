"""Byte-for-byte interoperability with an independent implementation: Go's
``golang.org/x/mod/sumdb/note`` and ``golang.org/x/mod/sumdb/tlog`` (Debian's
golang-golang-x-mod-dev), driven through the small program in ``gotool/``.

Covers signed notes and keys both ways, Merkle roots and proofs both ways, a log written by Go
in the C2SP tlog-tiles layout verified by telegate's offline verifier (and tampered copies
rejected), and telegate's own tiles, entry bundles and exported log checked against Go.

Needs ``go`` and the x/mod sources, built in GOPATH mode (no network, no go.mod): skipped when
they are missing, except under CI (``CI=true``), where their absence fails the run.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger.checkpoint import Checkpoint
from ledger.errors import InvalidNote, InvalidProof, VerificationFailed
from ledger.export import export_log
from ledger.log import Log
from ledger.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_of,
    tree_hash,
    verify_consistency,
    verify_inclusion,
)
from ledger.note import NoteSignature, Signer, Verifier, format_note, open_note, parse_note
from ledger.store import SQLiteStore
from ledger.tiles import Tile, encode_entry_bundle, parse_tile_path, tile_levels, tiles_for_size
from ledger.verify import DirSource, verify_log
from tests.conftest import VECTORS, need

pytestmark = pytest.mark.interop

GOTOOL_SRC = Path(__file__).resolve().parent / "gotool"
GOPATH = Path(os.environ.get("TELEGATE_GOPATH", "/usr/share/gocode"))
X_MOD_SUMDB = GOPATH / "src" / "golang.org" / "x" / "mod" / "sumdb"
DEBIAN_PACKAGES = "golang-go golang-golang-x-mod-dev"

GO_ORIGIN = "example.com/go-log"  # gotool's gen-log key name and checkpoint origin
HASHES_N = 300  # gotool hashes: roots for 1..300, proofs for the sizes below
PROOF_SIZES = (*range(1, 41), 63, 64, 65, 127, 128, 129, 255, 256, 257, 299, 300)
LOG_SIZES = (1, 255, 256, 257, 1000, 65536, 70000)


def record(i: int) -> bytes:
    """Record i of gotool's deterministic logs."""
    return f"go record {i}\n".encode()


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def unb64(s: str) -> bytes:
    return base64.b64decode(s, validate=True)


def flip(data: bytes, pos: int) -> bytes:
    return data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1 :]


# -- the Go tool -----------------------------------------------------------------------


@dataclass(frozen=True)
class GoTool:
    exe: Path

    def run(self, *args: str | int, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(self.exe), *map(str, args)], input=stdin, capture_output=True, timeout=120
        )

    def ok(self, *args: str | int, stdin: bytes = b"") -> bytes:
        res = self.run(*args, stdin=stdin)
        if res.returncode != 0:
            pytest.fail(f"gotool {args[0]} failed: {res.stderr.decode().strip()}", pytrace=False)
        return res.stdout

    def json(self, *args: str | int, stdin: Any = None) -> Any:
        data = b"" if stdin is None else json.dumps(stdin).encode()
        return json.loads(self.ok(*args, stdin=data))

    def check_proofs(self, items: Sequence[dict[str, Any]]) -> None:
        """Have Go's tlog.CheckRecord / tlog.CheckTree accept every item."""
        assert self.json("check-proofs", stdin=list(items))["checked"] >= len(items)


def go_env(cache: Path) -> dict[str, str]:
    # GOPATH mode: imports resolve from Debian's /usr/share/gocode/src, nothing is fetched.
    return {
        **os.environ,
        "GOPATH": str(GOPATH),
        "GO111MODULE": "off",
        "GOFLAGS": "",
        "GOCACHE": str(cache),
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
    }


@pytest.fixture(scope="session")
def gotool(tmp_path_factory: pytest.TempPathFactory) -> GoTool:
    go = shutil.which("go") or ("/usr/bin/go" if Path("/usr/bin/go").exists() else None)
    install = f"apt-get install {DEBIAN_PACKAGES}"
    need(go is not None, f"Go interop tests need the go toolchain: {install}")
    for pkg in ("note", "tlog"):
        need(
            (X_MOD_SUMDB / pkg).is_dir(),
            f"Go interop tests need golang.org/x/mod/sumdb/{pkg} in {GOPATH}/src: {install}",
        )
    assert go is not None
    out = tmp_path_factory.mktemp("gotool")
    exe = out / "gotool"
    res = subprocess.run(
        [str(go), "build", "-o", str(exe), "."],
        cwd=GOTOOL_SRC,
        env=go_env(out / "gocache"),
        capture_output=True,
        timeout=600,
    )
    if res.returncode != 0:
        pytest.fail(f"building tests/interop/gotool failed:\n{res.stderr.decode()}", pytrace=False)
    return GoTool(exe)


# -- signed notes ------------------------------------------------------------------------

NOTE_TEXTS = {
    "checkpoint": f"{GO_ORIGIN}\n5\n{b64(bytes(range(32)))}\n",
    "checkpoint-extension": f"{GO_ORIGIN}\n0\n{b64(bytes(32))}\nextension line\n",
    "unicode": "h\u00e9llo \u2014 w\u00f6rld \U0001f600\nsecond line\n",
    "inner-blank-line": "first\n\nafter a blank line\n",
}


def test_spec_example_verifies_in_go_and_python(gotool: GoTool) -> None:
    vkey = (VECTORS / "signed-note-example.vkey").read_text().strip()
    msg = (VECTORS / "signed-note-example.note").read_bytes()
    note, good = open_note(msg, [Verifier.from_vkey(vkey)])
    assert [v.vkey for v in good] == [vkey]
    assert gotool.ok("verify-note", vkey, stdin=msg).decode() == note.text
    assert note.text == "This is an example message.\n"
    # And both reject it once the text changes.
    bad = msg.replace(b"example message", b"example massage")
    with pytest.raises(InvalidNote):
        open_note(bad, [Verifier.from_vkey(vkey)])
    assert gotool.run("verify-note", vkey, stdin=bad).returncode != 0


@pytest.mark.parametrize("text", NOTE_TEXTS.values(), ids=NOTE_TEXTS.keys())
def test_go_signed_note_opens_in_python(gotool: GoTool, text: str) -> None:
    key = gotool.json("gen-key", GO_ORIGIN)
    msg = gotool.ok("sign-note", key["skey"], stdin=text.encode())
    verifier = Verifier.from_vkey(key["vkey"])
    assert verifier.vkey == key["vkey"]
    note, good = open_note(msg, [verifier])
    assert note.text == text
    assert good == [verifier]
    # Python re-encodes the parsed note to the very bytes Go wrote.
    assert note.encode() == msg
    # A different key of the same name is unknown; a changed text fails the signature.
    other = Verifier.from_vkey(gotool.json("gen-key", GO_ORIGIN)["vkey"])
    with pytest.raises(InvalidNote, match="no signature by a known key"):
        open_note(msg, [other])
    with pytest.raises(InvalidNote, match="does not verify"):
        open_note(b"x" + msg, [verifier])


@pytest.mark.parametrize("text", NOTE_TEXTS.values(), ids=NOTE_TEXTS.keys())
def test_telegate_signed_note_opens_in_go(gotool: GoTool, text: str) -> None:
    signer = Signer.generate(GO_ORIGIN)
    msg = format_note(text, [signer.sign(text)])
    assert gotool.ok("verify-note", signer.vkey, stdin=msg).decode() == text
    res = gotool.run("verify-note", signer.vkey, stdin=b"x" + msg)
    assert res.returncode != 0
    assert b"invalid signature" in res.stderr
    other = Signer.generate(GO_ORIGIN)
    res = gotool.run("verify-note", other.vkey, stdin=msg)
    assert res.returncode != 0
    assert b"no verifiable signatures" in res.stderr


@pytest.mark.parametrize("text", NOTE_TEXTS.values(), ids=NOTE_TEXTS.keys())
def test_go_private_key_loads_in_python(gotool: GoTool, text: str) -> None:
    key = gotool.json("gen-key", GO_ORIGIN)
    signer = Signer.from_skey(key["skey"])
    assert signer.skey == key["skey"]
    assert signer.vkey == key["vkey"]
    # Ed25519 is deterministic: the same key signs the same note to the same bytes.
    go_msg = gotool.ok("sign-note", key["skey"], stdin=text.encode())
    assert format_note(text, [signer.sign(text)]) == go_msg


def test_telegate_private_key_loads_in_go(gotool: GoTool) -> None:
    signer = Signer.generate("example.com/t")
    text = NOTE_TEXTS["checkpoint"]
    go_msg = gotool.ok("sign-note", signer.skey, stdin=text.encode())
    assert go_msg == format_note(text, [signer.sign(text)])
    assert parse_note(go_msg).signatures[0].key_id == signer.key_id


def _b64_part(key: str, plus_before: int) -> str:
    """The base64 field of a vkey (2 '+' before it) or skey (4 '+' before it)."""
    return key.split("+", plus_before)[plus_before]


def test_keys_with_plus_in_base64_load_both_ways(gotool: GoTool) -> None:
    # '+' is a base64 digit as well as the key field separator: about half of all keys
    # carry one in their base64 field. Go's parser splits at the first separators only.
    text = NOTE_TEXTS["checkpoint"]
    found = {"vkey": False, "skey": False}
    for _ in range(200):
        key = gotool.json("gen-key", GO_ORIGIN)
        has = {"vkey": "+" in _b64_part(key["vkey"], 2), "skey": "+" in _b64_part(key["skey"], 4)}
        if not any(has[k] and not found[k] for k in has):
            continue
        signer = Signer.from_skey(key["skey"])
        assert signer.vkey == key["vkey"]
        assert Verifier.from_vkey(key["vkey"]).vkey == key["vkey"]
        assert format_note(text, [signer.sign(text)]) == gotool.ok(
            "sign-note", key["skey"], stdin=text.encode()
        )
        found = {k: found[k] or has[k] for k in found}
        if all(found.values()):
            break
    assert all(found.values()), "no Go key with '+' in its base64 in 200 tries"

    found = {"vkey": False, "skey": False}
    for _ in range(200):
        signer = Signer.generate("example.com/t")
        has = {"vkey": "+" in _b64_part(signer.vkey, 2), "skey": "+" in _b64_part(signer.skey, 4)}
        if not any(has[k] and not found[k] for k in has):
            continue
        msg = gotool.ok("sign-note", signer.skey, stdin=text.encode())
        assert msg == format_note(text, [signer.sign(text)])
        assert gotool.ok("verify-note", signer.vkey, stdin=msg).decode() == text
        found = {k: found[k] or has[k] for k in found}
        if all(found.values()):
            break
    assert all(found.values()), "no telegate key with '+' in its base64 in 200 tries"


def _malformed_notes() -> dict[str, tuple[Callable[[Signer, Signer], bytes], bool]]:
    """Notes by a known key ``s`` (and an unknown ``u``) -> whether they must open."""
    t = "hello\n"
    em = "\u2014 ".encode()

    def good(s: Signer) -> bytes:
        return format_note(t, [s.sign(t)])

    def line(s: Signer) -> bytes:
        return s.sign(t).line().encode()

    def bad(s: Signer) -> NoteSignature:
        return NoteSignature(s.name, s.key_id, bytes(64))

    return {
        "valid": (lambda s, u: good(s), True),
        "repeated-identical-line": (lambda s, u: good(s) + line(s), True),
        "bad-then-valid-same-key": (lambda s, u: format_note(t, [bad(s), s.sign(t)]), False),
        "unknown-then-valid": (lambda s, u: format_note(t, [u.sign(t), s.sign(t)]), True),
        "only-unknown-key": (lambda s, u: good(u), False),
        "crlf": (lambda s, u: good(s).replace(b"\n", b"\r\n"), False),
        "no-final-newline": (lambda s, u: good(s)[:-1], False),
        "trailing-space": (lambda s, u: good(s)[:-1] + b" \n", False),
        "signature-under-5-bytes": (
            lambda s, u: t.encode() + b"\n" + em + s.name.encode() + b" YWJjZA==\n",
            False,
        ),
        "nbsp-in-key-name": (
            lambda s, u: t.encode() + b"\n" + em + b"a\xc2\xa0b YWJjZGU=\n" + line(s),
            False,
        ),
        "nel-and-del-in-text": (
            lambda s, u: format_note("a\u0085b\x7f\n", [s.sign("a\u0085b\x7f\n")]),
            True,
        ),
        "100-signatures": (lambda s, u: t.encode() + b"\n" + line(s) * 100, True),
        "101-signatures": (lambda s, u: t.encode() + b"\n" + line(s) * 101, False),
        "unpadded-base64": (lambda s, u: good(s).replace(b"=\n", b"\n"), False),
        "blank-line-after-signatures": (lambda s, u: good(s) + b"\n", False),
        "non-utf8": (lambda s, u: b"\xff" + good(s), False),
        "no-space-after-dash": (lambda s, u: good(s).replace(em, em[:-1]), False),
        "two-spaces-before-signature": (
            lambda s, u: good(s).replace(s.name.encode() + b" ", s.name.encode() + b"  "),
            False,
        ),
        "hyphen-instead-of-em-dash": (lambda s, u: good(s).replace(em, b"- "), False),
    }


MALFORMED_NOTES = _malformed_notes()


@pytest.mark.parametrize("make,opens", MALFORMED_NOTES.values(), ids=MALFORMED_NOTES.keys())
def test_go_and_telegate_agree_on_note_edge_cases(
    gotool: GoTool, make: Callable[[Signer, Signer], bytes], opens: bool
) -> None:
    known, unknown = Signer.generate("example.com/k"), Signer.generate("example.com/u")
    msg = make(known, unknown)
    try:
        open_note(msg, [known.verifier])
        py_opens = True
    except InvalidNote:
        py_opens = False
    go_opens = gotool.run("verify-note", known.vkey, stdin=msg).returncode == 0
    assert (py_opens, go_opens) == (opens, opens)


# -- Merkle hashes and proofs ---------------------------------------------------------------


@dataclass(frozen=True)
class GoHashes:
    leaves: list[bytes]
    roots: list[bytes]  # roots[t - 1] is the root of the first t leaves
    inclusion: dict[int, list[tuple[int, list[bytes]]]]  # size -> [(index, proof)]
    consistency: dict[int, list[tuple[int, list[bytes]]]]  # size -> [(old, proof)]


@pytest.fixture(scope="session")
def go_hashes(gotool: GoTool) -> GoHashes:
    out = gotool.json("hashes", HASHES_N)
    inclusion: dict[int, list[tuple[int, list[bytes]]]] = {}
    consistency: dict[int, list[tuple[int, list[bytes]]]] = {}
    for p in out["inclusion"]:
        inclusion.setdefault(p["size"], []).append((p["index"], [unb64(h) for h in p["proof"]]))
    for p in out["consistency"]:
        consistency.setdefault(p["size"], []).append((p["old"], [unb64(h) for h in p["proof"]]))
    return GoHashes(
        [unb64(h) for h in out["leaf_hashes"]],
        [unb64(h) for h in out["roots"]],
        inclusion,
        consistency,
    )


def complete_nodes(leaves: Sequence[bytes]) -> dict[tuple[int, int], bytes]:
    """Every complete subtree ``(level, index) -> hash`` over the leaves."""
    nodes = {(0, i): h for i, h in enumerate(leaves)}
    row, level = list(leaves), 0
    while len(row) > 1:
        row = [node_hash(row[2 * i], row[2 * i + 1]) for i in range(len(row) // 2)]
        level += 1
        nodes.update(((level, i), h) for i, h in enumerate(row))
    return nodes


def reader(
    nodes: dict[tuple[int, int], bytes], size: int
) -> Callable[[Sequence[tuple[int, int]]], list[bytes]]:
    """A NodeReader for the tree of ``size`` leaves that refuses nodes outside it."""

    def read(coords: Sequence[tuple[int, int]]) -> list[bytes]:
        for level, index in coords:
            assert (index + 1) << level <= size, f"node {(level, index)} is not in tree {size}"
        return [nodes[c] for c in coords]

    return read


@pytest.fixture(scope="session")
def py_nodes() -> dict[tuple[int, int], bytes]:
    return complete_nodes([leaf_hash(record(i)) for i in range(HASHES_N)])


def test_go_covers_the_proof_sizes(go_hashes: GoHashes) -> None:
    assert set(PROOF_SIZES) == set(go_hashes.inclusion) == set(go_hashes.consistency)


def test_leaf_hashes_and_roots_match_go(
    go_hashes: GoHashes, py_nodes: dict[tuple[int, int], bytes]
) -> None:
    leaves = [leaf_hash(record(i)) for i in range(HASHES_N)]
    assert leaves == go_hashes.leaves
    for t in range(1, HASHES_N + 1):
        assert root_of(leaves[:t]) == go_hashes.roots[t - 1], f"root of size {t}"
        assert tree_hash(t, reader(py_nodes, t)) == go_hashes.roots[t - 1], f"tree_hash({t})"


@pytest.mark.parametrize("size", PROOF_SIZES, ids=[f"size={t}" for t in PROOF_SIZES])
def test_inclusion_proofs_match_go(
    gotool: GoTool, go_hashes: GoHashes, py_nodes: dict[tuple[int, int], bytes], size: int
) -> None:
    root = go_hashes.roots[size - 1]
    read = reader(py_nodes, size)
    items = []
    for index, go_proof in go_hashes.inclusion[size]:
        leaf = go_hashes.leaves[index]
        proof = inclusion_proof(index, size, read)
        assert proof == go_proof, f"inclusion proof of {index} in {size}"
        verify_inclusion(index, size, leaf, go_proof, root)
        items.append(
            {
                "size": size,
                "root": b64(root),
                "leaf_index": index,
                "leaf_hash": b64(leaf),
                "inclusion": [b64(h) for h in proof],
            }
        )
    # Python's own proofs for every leaf of the tree, checked by Go's tlog.CheckRecord.
    for index in range(size):
        proof = inclusion_proof(index, size, read)
        items.append(
            {
                "size": size,
                "root": b64(root),
                "leaf_index": index,
                "leaf_hash": b64(go_hashes.leaves[index]),
                "inclusion": [b64(h) for h in proof],
            }
        )
    gotool.check_proofs(items)


@pytest.mark.parametrize("size", PROOF_SIZES, ids=[f"size={t}" for t in PROOF_SIZES])
def test_consistency_proofs_match_go(
    gotool: GoTool, go_hashes: GoHashes, py_nodes: dict[tuple[int, int], bytes], size: int
) -> None:
    root = go_hashes.roots[size - 1]
    read = reader(py_nodes, size)
    for old, go_proof in go_hashes.consistency[size]:
        proof = consistency_proof(old, size, read)
        assert proof == go_proof, f"consistency proof {old} -> {size}"
        verify_consistency(old, size, go_hashes.roots[old - 1], root, go_proof)
    # Python's own proofs from every smaller size, checked by Go's tlog.CheckTree.
    items = [
        {
            "size": size,
            "root": b64(root),
            "old_size": old,
            "old_root": b64(go_hashes.roots[old - 1]),
            "consistency": [b64(h) for h in consistency_proof(old, size, read)],
        }
        for old in range(1, size + 1)
    ]
    gotool.check_proofs(items)


CORRUPTIONS = {
    "inclusion-flipped-node": ("inclusion", lambda p: [flip(p[0], 0), *p[1:]]),
    "inclusion-dropped-node": ("inclusion", lambda p: p[:-1]),
    "inclusion-extra-node": ("inclusion", lambda p: [*p, bytes(32)]),
    "consistency-flipped-node": ("consistency", lambda p: [*p[:-1], flip(p[-1], 31)]),
    "consistency-dropped-node": ("consistency", lambda p: p[1:]),
    "consistency-extra-node": ("consistency", lambda p: [*p, bytes(32)]),
}


@pytest.mark.parametrize("kind,corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_corrupt_proofs_rejected_by_both(
    gotool: GoTool,
    go_hashes: GoHashes,
    py_nodes: dict[tuple[int, int], bytes],
    kind: str,
    corrupt: Callable[[list[bytes]], list[bytes]],
) -> None:
    size, index, old = 257, 100, 100
    root = go_hashes.roots[size - 1]
    read = reader(py_nodes, size)
    item: dict[str, Any] = {"size": size, "root": b64(root)}
    if kind == "inclusion":
        proof = corrupt(inclusion_proof(index, size, read))
        with pytest.raises(InvalidProof):
            verify_inclusion(index, size, go_hashes.leaves[index], proof, root)
        item |= {"leaf_index": index, "leaf_hash": b64(go_hashes.leaves[index])}
    else:
        proof = corrupt(consistency_proof(old, size, read))
        with pytest.raises(InvalidProof):
            verify_consistency(old, size, go_hashes.roots[old - 1], root, proof)
        item |= {"old_size": old, "old_root": b64(go_hashes.roots[old - 1])}
    item[kind] = [b64(h) for h in proof]
    res = gotool.run("check-proofs", stdin=json.dumps(item).encode())
    assert res.returncode != 0
    assert b"invalid transparency proof" in res.stderr


# -- tile paths ----------------------------------------------------------------------------

TILE_COORDS = [
    (0, 0, 256),
    (0, 0, 1),
    (0, 999, 255),
    (0, 1000, 256),
    (1, 1234067, 256),
    (2, 1234067, 1),
    (3, 123456789, 17),
    (None, 0, 256),
    (None, 5, 3),
    (None, 1000000, 128),
    (63, 10**15, 256),
]


def test_tile_paths_match_go(gotool: GoTool) -> None:
    coords = [[-1 if lvl is None else lvl, n, w] for lvl, n, w in TILE_COORDS]
    go_paths = gotool.json("tile-paths", stdin=coords)
    for (level, index, width), go_path in zip(TILE_COORDS, go_paths, strict=True):
        tile = Tile(level, index, width)
        assert tile.path == go_path
        assert parse_tile_path(go_path) == tile


# -- a log written by Go, verified by telegate --------------------------------------------


@dataclass(frozen=True)
class GoLog:
    dir: Path
    vkey: str
    size: int
    root: bytes
    paths: frozenset[str]


@pytest.fixture(scope="session")
def go_log(gotool: GoTool, tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], GoLog]:
    """``go_log(n)``: the n-record log gotool wrote (cached; copy it before changing it)."""
    cache: dict[int, GoLog] = {}

    def get(n: int) -> GoLog:
        if n not in cache:
            d = tmp_path_factory.mktemp(f"go-log-{n}")
            out = gotool.json("gen-log", n, d)
            assert out["origin"] == GO_ORIGIN
            cache[n] = GoLog(
                d, out["vkey"], out["size"], unb64(out["root"]), frozenset(out["paths"])
            )
        return cache[n]

    return get


def expected_paths(size: int) -> set[str]:
    paths = {t.path for t in tiles_for_size(size, None)}
    for level in range(tile_levels(size)):
        paths |= {t.path for t in tiles_for_size(size, level)}
    return paths


@pytest.mark.parametrize("n", LOG_SIZES, ids=[f"n={n}" for n in LOG_SIZES])
def test_go_log_verifies_with_telegate(
    gotool: GoTool, go_log: Callable[[int], GoLog], n: int
) -> None:
    log = go_log(n)
    # Both sides agree on which objects a log of this size publishes.
    assert log.paths == expected_paths(n)
    on_disk = {p.relative_to(log.dir).as_posix() for p in log.dir.rglob("*") if p.is_file()}
    assert on_disk == expected_paths(n) | {"checkpoint"}
    cp = verify_log(DirSource(log.dir), Verifier.from_vkey(log.vkey))
    assert cp == Checkpoint(GO_ORIGIN, n, log.root)
    # Go's own authenticating tile reader accepts it too (the layout is sound for Go).
    assert gotool.json("verify-log", log.vkey, log.dir)["root"] == b64(log.root)


def _tamper_entry_byte(d: Path) -> tuple[str, str]:
    p = d / "tile/entries/001"
    data = p.read_bytes()
    # Entry 256 starts the bundle: 2 length bytes, then "go record 256\n"; flip the 'g'.
    p.write_bytes(flip(data, 2))
    return "entry 256", "tile/entries/001"


def _tamper_entry_later(d: Path) -> tuple[str, str]:
    p = d / "tile/entries/002"
    entries = [record(i) for i in range(512, 768)]
    pos = sum(2 + len(e) for e in entries[:37]) + 2 + 5  # a byte inside entry 512 + 37
    p.write_bytes(flip(p.read_bytes(), pos))
    return "entry 549", "tile/entries/002"


def _tamper_entry_length(d: Path) -> tuple[str, str]:
    p = d / "tile/entries/003.p/232"
    p.write_bytes(flip(p.read_bytes(), 1))  # a length prefix: the bundle no longer parses
    return "tile/entries/003.p/232", "tile/entries/003.p/232"


def _tamper_level0_tile(d: Path) -> tuple[str, str]:
    p = d / "tile/0/001"
    p.write_bytes(flip(p.read_bytes(), 100))
    return "tile/0/001", "tile/0/001"


def _tamper_checkpoint(d: Path) -> tuple[str, str]:
    p = d / "checkpoint"
    p.write_bytes(p.read_bytes().replace(b"\n1000\n", b"\n999\n"))
    return "checkpoint", "checkpoint"


TAMPERS = {
    "entry-byte": _tamper_entry_byte,
    "entry-byte-mid-bundle": _tamper_entry_later,
    "entry-length-prefix": _tamper_entry_length,
    "level-0-tile": _tamper_level0_tile,
    "checkpoint-size": _tamper_checkpoint,
}


@pytest.mark.parametrize("tamper", TAMPERS.values(), ids=TAMPERS.keys())
def test_tampered_go_log_is_rejected(
    gotool: GoTool,
    go_log: Callable[[int], GoLog],
    tmp_path: Path,
    tamper: Callable[[Path], tuple[str, str]],
) -> None:
    log = go_log(1000)
    d = tmp_path / "log"
    shutil.copytree(log.dir, d)
    where, obj = tamper(d)
    with pytest.raises(VerificationFailed) as exc:
        verify_log(DirSource(d), Verifier.from_vkey(log.vkey))
    assert exc.value.where == where
    assert obj in str(exc.value)
    assert gotool.run("verify-log", log.vkey, d).returncode != 0


def test_tampered_level1_tile_is_named(
    gotool: GoTool, go_log: Callable[[int], GoLog], tmp_path: Path
) -> None:
    log = go_log(70000)
    d = tmp_path / "log"
    shutil.copytree(log.dir, d)
    p = d / "tile/1/000"
    p.write_bytes(flip(p.read_bytes(), 4000))
    with pytest.raises(VerificationFailed) as exc:
        verify_log(DirSource(d), Verifier.from_vkey(log.vkey))
    assert exc.value.where == "tile/1/000"
    assert gotool.run("verify-log", log.vkey, d).returncode != 0


# -- telegate's own log against Go -----------------------------------------------------------


@dataclass(frozen=True)
class TelegateLog:
    store: SQLiteStore
    signer: Signer
    checkpoint: Checkpoint
    receipts: list[Any]


@pytest.fixture(scope="session")
def telegate_log(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[int], TelegateLog]]:
    """``telegate_log(n)``: a telegate log of gotool's n deterministic records (cached).

    Up to 2000 records go through the sequencer (``Log``) with receipts; larger logs are
    committed straight to the store in uneven batches, since 70000 receipts take ~7 s.
    """
    cache: dict[int, TelegateLog] = {}
    logs: list[Log] = []
    stores: list[SQLiteStore] = []

    def get(n: int) -> TelegateLog:
        if n in cache:
            return cache[n]
        signer = Signer.generate("example.com/t")
        store = SQLiteStore(tmp_path_factory.mktemp(f"telegate-{n}") / "log.db")
        receipts: list[Any] = []
        if n <= 2000:
            log = Log(store, signer)
            logs.append(log)
            log.start()
            receipts = [log.append_sync(record(i), timeout=30) for i in range(min(n, 3))]
            futs = [log.submit(record(i)) for i in range(len(receipts), n)]
            receipts += [f.result(timeout=60) for f in futs]
        else:
            stores.append(store)
            frontier = store.frontier()

            def sign(size: int, root: bytes) -> bytes:
                text = Checkpoint(signer.name, size, root).text()
                return format_note(text, [signer.sign(text)])

            start, step = 0, 1
            while start < n:
                end = min(n, start + step)
                store.commit([record(i) for i in range(start, end)], frontier, sign)
                start, step = end, step * 3 + 1
        note = store.checkpoint()
        assert note is not None
        cp = Checkpoint.parse(open_note(note, [signer.verifier])[0].text)
        cache[n] = TelegateLog(store, signer, cp, receipts)
        return cache[n]

    yield get
    for log in logs:
        log.close()
    for store in stores:
        store.close()


TELEGATE_SIZES = (1000, 70000)


@pytest.mark.parametrize("n", TELEGATE_SIZES, ids=[f"n={n}" for n in TELEGATE_SIZES])
def test_telegate_tiles_equal_go_tiles(
    go_log: Callable[[int], GoLog], telegate_log: Callable[[int], TelegateLog], n: int
) -> None:
    go, tg = go_log(n), telegate_log(n)
    assert tg.checkpoint.size == n
    assert tg.checkpoint.root == go.root
    for level in range(tile_levels(n)):
        for tile in tiles_for_size(n, level):
            assert tg.store.read_tile(tile) == (go.dir / tile.path).read_bytes(), tile.path
    for tile in tiles_for_size(n, None):
        start = tile.index * 256
        bundle = encode_entry_bundle(tg.store.read_entries(start, start + tile.width))
        assert bundle == (go.dir / tile.path).read_bytes(), tile.path


GO_TILES = [
    (0, 0, 256, 1000),
    (0, 3, 232, 1000),
    (1, 0, 3, 1000),
    (0, 273, 112, 70000),
    (1, 0, 256, 70000),
    (1, 1, 17, 70000),
    (2, 0, 1, 70000),
]


@pytest.mark.parametrize(
    "level,index,width,n", GO_TILES, ids=[f"{Tile(*t[:3]).path}@{t[3]}" for t in GO_TILES]
)
def test_telegate_tile_equals_go_tile_command(
    gotool: GoTool,
    telegate_log: Callable[[int], TelegateLog],
    level: int,
    index: int,
    width: int,
    n: int,
) -> None:
    out = gotool.json("tile", level, index, width, n)
    tile = Tile(level, index, width)
    assert out["path"] == tile.path
    assert telegate_log(n).store.read_tile(tile) == unb64(out["tile"])


@pytest.mark.parametrize("n", TELEGATE_SIZES, ids=[f"n={n}" for n in TELEGATE_SIZES])
def test_telegate_export_verifies_in_go(
    gotool: GoTool, telegate_log: Callable[[int], TelegateLog], tmp_path: Path, n: int
) -> None:
    tg = telegate_log(n)
    cp = export_log(tg.store, tmp_path / "export")
    assert cp == tg.checkpoint
    out = gotool.json("verify-log", tg.signer.vkey, tmp_path / "export")
    assert out == {"origin": "example.com/t", "size": n, "root": b64(tg.checkpoint.root)}


def test_telegate_receipts_verify_in_go(
    gotool: GoTool, telegate_log: Callable[[int], TelegateLog]
) -> None:
    tg = telegate_log(1000)
    assert len(tg.receipts) == 1000
    items = []
    for r in tg.receipts[::7]:
        text = gotool.ok("verify-note", tg.signer.vkey, stdin=r.checkpoint).decode()
        cp = Checkpoint.parse(text)
        assert r.leaf_hash == leaf_hash(record(r.index))
        items.append(
            {
                "size": cp.size,
                "root": b64(cp.root),
                "leaf_index": r.index,
                "leaf_hash": b64(r.leaf_hash),
                "inclusion": [b64(h) for h in r.proof],
            }
        )
    gotool.check_proofs(items)
