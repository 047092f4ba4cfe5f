"""OpenAPI paths of the ledger's HTTP face (``gateway.ledger_api``): checkpoint, vkey,
C2SP tlog-tiles, proofs and entries. Public: no credentials, no PHI."""

from __future__ import annotations

from typing import Any

from .openapi_parts import (
    B64,
    OLD_PROOF,
    UINT,
    json_reply,
    obj,
    problem,
    ref,
    text_reply,
    uint_query,
)

__all__ = ["PATHS", "SCHEMAS"]

_SIZE = {"type": "integer", "minimum": 0}

#: The named shapes of the ledger's JSON answers (``components/schemas``).
SCHEMAS: dict[str, Any] = {
    "InclusionProofAnswer": obj(
        {
            "index": {**_SIZE, "description": "the leaf index"},
            "size": {**_SIZE, "description": "the tree size the proof is against"},
            "leaf_hash": B64,
            "inclusion_proof": ref("InclusionProof"),
            "proof": OLD_PROOF,
        },
        description="RFC 6962 / 9162 inclusion proof of a leaf in the tree of `size` leaves",
    ),
    "ConsistencyProofAnswer": obj(
        {
            "old": _SIZE,
            "new": _SIZE,
            "consistency_proof": {
                "type": "array",
                "items": B64,
                "maxItems": 128,
                "description": "RFC 6962 / 9162 consistency path, base64 hashes",
            },
            "proof": OLD_PROOF,
        },
        description="RFC 6962 / 9162 consistency proof between two tree sizes",
    ),
    "LedgerEntry": obj(
        {
            "index": _SIZE,
            "leaf_hash": B64,
            "data": {**B64, "description": "the leaf bytes"},
            "event": ref("LedgerEvent"),
        },
        ["index", "leaf_hash", "data"],
        description="One ledger entry: its leaf bytes, hash, and the parsed event",
    ),
}
TILE_PATH = r"^(entries|[0-9]{1,2})/(x[0-9]{3}/)*[0-9]{3}(\.p/[0-9]{1,3})?$"


# The ledger's reads go to its store; on the shared database (PostgreSQL) a replica also
# asks it when a size is beyond its own view. /ledger/checkpoint and /ledger/vkey answer
# from memory.
UNREACHABLE = {
    "503": {
        **problem(
            "The ledger's database (PostgreSQL, `database_url`) cannot be reached; retry after "
            "`Retry-After` seconds."
        ),
        "headers": {"Retry-After": {"required": True, "schema": {"type": "integer"}}},
    }
}
BEYOND = (
    "; a replica asks the shared database before answering, so a receipt issued by another "
    "replica is provable at once."
)


PATHS: dict[str, Any] = {
    "/ledger/checkpoint": {
        "get": {
            "summary": "Newest C2SP checkpoint (signed note)",
            "description": "With witnesses configured: the newest checkpoint cosigned by "
            "the witness quorum, their tlog-cosignature lines appended to the log's "
            "signature, or the newest checkpoint until one is.",
            "responses": {"200": text_reply("signed note, text/plain")},
        }
    },
    "/ledger/vkey": {
        "get": {"summary": "The log's C2SP verifier key", "responses": {"200": text_reply("vkey")}}
    },
    "/ledger/tile/{path}": {
        "get": {
            "summary": "C2SP tlog-tiles hash tile `<L>/<N>[.p/<W>]` or entry bundle "
            "`entries/<N>[.p/<W>]`",
            "parameters": [
                {
                    "name": "path",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": TILE_PATH},
                    "description": "tile path below /ledger/tile/ (contains '/')",
                }
            ],
            "responses": {
                "200": {
                    "description": "tile bytes",
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                },
                "400": problem("malformed tile path"),
                "404": problem("beyond the tree" + BEYOND),
                **UNREACHABLE,
            },
        }
    },
    "/ledger/proof/inclusion": {
        "get": {
            "summary": "RFC 6962 inclusion proof of a leaf",
            "parameters": [
                uint_query("index", True, "leaf index"),
                uint_query("size", False, "tree size (default: newest)"),
            ],
            "responses": {
                "200": json_reply("proof", ref("InclusionProofAnswer")),
                "400": problem("malformed parameters"),
                "404": problem("A size or index beyond the tree as stored" + BEYOND),
                **UNREACHABLE,
            },
        }
    },
    "/ledger/proof/consistency": {
        "get": {
            "summary": "RFC 6962 consistency proof between two tree sizes",
            "parameters": [
                uint_query("old", True, "older size"),
                uint_query("new", False, "newer size (default: newest)"),
            ],
            "responses": {
                "200": json_reply("proof", ref("ConsistencyProofAnswer")),
                "400": problem("malformed parameters"),
                "404": problem("A size or index beyond the tree as stored" + BEYOND),
                **UNREACHABLE,
            },
        }
    },
    "/ledger/entries/{index}": {
        "get": {
            "summary": "One ledger entry (its leaf bytes, hash and parsed event)",
            "parameters": [{"name": "index", "in": "path", "required": True, "schema": UINT}],
            "responses": {
                "200": json_reply("entry", ref("LedgerEntry")),
                "400": problem("malformed index"),
                "404": problem("A size or index beyond the tree as stored" + BEYOND),
                **UNREACHABLE,
            },
        }
    },
}
