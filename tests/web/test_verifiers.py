"""The browser's verifiers (web/js/merkle.js, note.js, jcs.js) run in Chromium against the
same vectors as the Python ledger, and against Python's own encodings: the console's "verified"
means what `python -m ledger verify` means."""

from __future__ import annotations

import base64
import json
import urllib.request
from typing import Any

import pytest
import rfc8785
from playwright.sync_api import Browser, Page

from ledger.checkpoint import Checkpoint
from ledger.errors import InvalidCheckpoint
from ledger.merkle import leaf_hash
from ledger.note import Signer
from tests.conftest import VECTORS
from tests.gateway.conftest import LiveGateway
from tests.web.browser import open_tab


def _vectors(kind: str) -> list[dict[str, Any]]:
    root = VECTORS / "rfc6962" / kind
    return [
        {**json.loads(f.read_text()), "id": str(f.relative_to(root))}
        for f in sorted(root.rglob("*.json"))
    ]


@pytest.fixture(scope="module")
def page(chromium: Browser, gateway: LiveGateway) -> Page:
    """A page of the gateway's origin: a secure context whose CSP lets it import web/js."""
    tab = open_tab(chromium)
    tab.page.goto(f"{gateway.url}/enroll")
    return tab.page


def test_merkle_vectors(page: Page) -> None:
    inclusion, consistency = _vectors("inclusion"), _vectors("consistency")
    assert len(inclusion) > 50 and len(consistency) > 50
    results = page.evaluate(
        """async ({ inclusion, consistency }) => {
        const m = await import("/web/js/merkle.js");
        const { b64decode } = await import("/web/js/codec.js");
        const b = (s) => (s ? b64decode(s) : new Uint8Array(0));
        const run = async (v, f) => {
            try { await f(); return [v.id, v.wantErr, null]; }
            catch (e) { return [v.id, v.wantErr, e.name]; }
        };
        const out = [];
        for (const v of inclusion) {
            out.push(["inclusion", ...await run(v, () => m.verifyInclusion(
                v.leafIdx, v.treeSize, b(v.leafHash), (v.proof || []).map(b), b(v.root)))]);
        }
        for (const v of consistency) {
            out.push(["consistency", ...await run(v, () => m.verifyConsistency(
                v.size1, v.size2, b(v.root1), b(v.root2), (v.proof || []).map(b)))]);
        }
        return out;
    }""",
        {"inclusion": inclusion, "consistency": consistency},
    )
    wrong = [
        (kind, vid, want_err, err)
        for kind, vid, want_err, err in results
        if (err is not None) != want_err or err not in (None, "InvalidProof")
    ]
    assert wrong == []
    assert len(results) == len(inclusion) + len(consistency)


def test_the_signed_note_specification_example(page: Page) -> None:
    vkey = (VECTORS / "signed-note-example.vkey").read_text().strip()
    note = (VECTORS / "signed-note-example.note").read_text()
    other = Signer.generate("example.com/foo").vkey
    got = page.evaluate(
        """async ({ vkey, note, other }) => {
        const n = await import("/web/js/note.js");
        const v = await n.parseVkey(vkey);
        const opened = await n.openNote(note, v);
        const fails = async (text, key) => {
            try { await n.openNote(text, key); return null; } catch (e) { return e.message; }
        };
        return {
            text: opened.text,
            keyId: v.hexId,
            edited: await fails(note.replace("example", "exampel"), v),
            otherKey: await fails(note, await n.parseVkey(other)),
            badId: await n.parseVkey(vkey.replace("+530d903a+", "+530d903b+")).then(
                () => null, (e) => e.message),
        };
    }""",
        {"vkey": vkey, "note": note, "other": other},
    )
    assert got["text"] == "This is an example message.\n"
    assert got["keyId"] == "530d903a"
    assert got["edited"] == "the signature by example.com/foo does not verify"
    assert got["otherKey"] == "no signature by the pinned key"
    assert got["badId"] == "the vkey's key id does not match its key"


def test_every_leaf_of_a_real_log_and_its_checkpoint(page: Page, gateway: LiveGateway) -> None:
    """Each entry the gateway has written, re-encoded from its parsed event by the browser's
    RFC 8785 code, hashes to the leaf the log holds; the live checkpoint verifies."""

    def get(path: str) -> bytes:
        with urllib.request.urlopen(gateway.url + path, timeout=10) as r:
            data: bytes = r.read()
            return data

    note = get("/ledger/checkpoint").decode()
    size = Checkpoint.parse(note[: note.index("\n\n") + 1]).size
    entries = [json.loads(get(f"/ledger/entries/{i}")) for i in range(size)]
    got = page.evaluate(
        """async ({ entries, note, vkey }) => {
        const { canonicalize } = await import("/web/js/jcs.js");
        const { leafHash } = await import("/web/js/merkle.js");
        const { b64encode, utf8 } = await import("/web/js/codec.js");
        const n = await import("/web/js/note.js");
        const cp = await n.openCheckpoint(note, await n.parseVkey(vkey));
        const leaves = [];
        for (const e of entries) {
            leaves.push(b64encode(await leafHash(utf8(canonicalize(e.event)))));
        }
        return { size: cp.size, origin: cp.origin, leaves };
    }""",
        {
            "entries": entries,
            "note": note,
            "vkey": (gateway.data_dir / "keys/log.vkey").read_text(),
        },
    )
    assert got["size"] == size and got["origin"] == "live.example/telegate/log"
    assert got["leaves"] == [e["leaf_hash"] for e in entries]
    assert all(base64.b64decode(e["data"]) == rfc8785.dumps(e["event"]) for e in entries)


JCS_CASES: list[Any] = [
    {"b": 1, "a": [True, False, None], "A": {"z": "", "y": -0.0}},
    {"numbers": [0, -1, 1e21, 1e-7, 0.1, 123456789012345, 5e-324, 1.7976931348623157e308]},
    {"text": 'quote " backslash \\ tab \t newline \n nul \x00 bell \x07 del \x7f'},
    {"\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\U0001f600": 5, "\u0080": 6, "\u00f6": 7},
    {"nested": {"data": {"jkt": "abc", "exp": 1700000000, "scope": "audit introspect"}}},
]


def test_jcs_refuses_a_lone_surrogate(page: Page) -> None:
    got = page.evaluate(
        """async () => {
        const { canonicalize } = await import("/web/js/jcs.js");
        const names = [];
        for (const s of ["\\ud800", "a\\udc00", "\\ud83d\\ude00"]) {
            try { names.push(canonicalize(JSON.parse(`"${s}"`))); }
            catch (e) { names.push(e.name); }
        }
        return names;
    }"""
    )
    assert got == ["TypeError", "TypeError", '"\U0001f600"']


@pytest.mark.parametrize("value", JCS_CASES, ids=range(len(JCS_CASES)))
def test_jcs_matches_python_rfc8785(page: Page, value: Any) -> None:
    got = page.evaluate(
        """async (value) => (await import("/web/js/jcs.js")).canonicalize(value)""", value
    )
    assert got.encode() == rfc8785.dumps(value)
    assert leaf_hash(got.encode()) == leaf_hash(rfc8785.dumps(value))


@pytest.mark.parametrize(
    "text",
    [
        "o\n0\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "o\n01\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "o\n-1\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "o\n1\n" + base64.b64encode(bytes(31)).decode() + "\n",
        "o\n1\n" + base64.b64encode(bytes(32)).decode() + "\next\n",
        "o\n1\n" + base64.b64encode(bytes(32)).decode() + "\n\n",
        "o\n1\n" + base64.b64encode(bytes(32)).decode(),
        "\n1\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "o\n1\n",
    ],
)
def test_checkpoint_bodies_parse_as_in_python(page: Page, text: str) -> None:
    try:
        cp = Checkpoint.parse(text)
        want: Any = [cp.origin, cp.size, base64.b64encode(cp.root).decode(), list(cp.extensions)]
    except InvalidCheckpoint:
        want = "InvalidCheckpoint"
    got = page.evaluate(
        """async (text) => {
        const n = await import("/web/js/note.js");
        try {
            const cp = n.parseCheckpoint(text);
            return [cp.origin, cp.size, cp.rootText, cp.extensions];
        } catch (e) { return e.name; }
    }""",
        text,
    )
    assert got == want
