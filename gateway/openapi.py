"""The OpenAPI 3.1 description of every endpoint, served at ``/openapi.json``.

A test compares it with the app's routes (nothing undocumented) and runs schemathesis
against a live gateway; each feature adds its paths here.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import __version__

__all__ = ["SPEC", "setup"]

PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _problem(desc: str) -> dict[str, Any]:
    return {"description": desc, "content": {"application/problem+json": {"schema": PROBLEM}}}


def _json(desc: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": schema}}}


def _text(desc: str) -> dict[str, Any]:
    return {"description": desc, "content": {"text/plain": {"schema": {"type": "string"}}}}


B64 = {"type": "string", "contentEncoding": "base64"}
TILE_PATH = r"^(entries|[0-9]{1,2})/(x[0-9]{3}/)*[0-9]{3}(\.p/[0-9]{1,3})?$"
UINT = {"type": "string", "pattern": "^[0-9]{1,19}$"}


def _q(name: str, required: bool, desc: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": UINT, "description": desc}


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "telegate",
        "version": __version__,
        "description": "Telemedicine session authentication and audit gateway. Every error is "
        "RFC 9457 problem+json.",
    },
    "paths": {
        "/healthz": {
            "get": {"summary": "Liveness", "responses": {"200": _json("alive", {"type": "object"})}}
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: the ledger accepts appends",
                "responses": {
                    "200": _json(
                        "ready", {"type": "object", "required": ["status", "ledger_size"]}
                    ),
                    "503": _problem("not ready"),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": _json("OpenAPI 3.1", {"type": "object"})},
            }
        },
        "/ledger/checkpoint": {
            "get": {
                "summary": "Newest C2SP checkpoint (signed note)",
                "responses": {"200": _text("signed note, text/plain")},
            }
        },
        "/ledger/vkey": {
            "get": {"summary": "The log's C2SP verifier key", "responses": {"200": _text("vkey")}}
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
                        "schema": {
                            "type": "string",
                            "pattern": TILE_PATH,
                        },
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
                    "400": _problem("malformed tile path"),
                    "404": _problem("beyond the tree"),
                },
            }
        },
        "/ledger/proof/inclusion": {
            "get": {
                "summary": "RFC 6962 inclusion proof of a leaf",
                "parameters": [
                    _q("index", True, "leaf index"),
                    _q("size", False, "tree size (default: newest)"),
                ],
                "responses": {
                    "200": _json(
                        "proof",
                        {
                            "type": "object",
                            "required": ["index", "size", "leaf_hash", "proof"],
                            "properties": {
                                "index": {"type": "integer"},
                                "size": {"type": "integer"},
                                "leaf_hash": B64,
                                "proof": {"type": "array", "items": B64},
                            },
                        },
                    ),
                    "400": _problem("malformed parameters"),
                    "404": _problem("size beyond the tree"),
                },
            }
        },
        "/ledger/proof/consistency": {
            "get": {
                "summary": "RFC 6962 consistency proof between two tree sizes",
                "parameters": [
                    _q("old", True, "older size"),
                    _q("new", False, "newer size (default: newest)"),
                ],
                "responses": {
                    "200": _json(
                        "proof",
                        {
                            "type": "object",
                            "required": ["old", "new", "proof"],
                            "properties": {
                                "old": {"type": "integer"},
                                "new": {"type": "integer"},
                                "proof": {"type": "array", "items": B64},
                            },
                        },
                    ),
                    "400": _problem("malformed parameters"),
                    "404": _problem("size beyond the tree"),
                },
            }
        },
        "/ledger/entries/{index}": {
            "get": {
                "summary": "One ledger entry (its leaf bytes, hash and parsed event)",
                "parameters": [{"name": "index", "in": "path", "required": True, "schema": UINT}],
                "responses": {
                    "200": _json(
                        "entry",
                        {
                            "type": "object",
                            "required": ["index", "leaf_hash", "data"],
                            "properties": {
                                "index": {"type": "integer"},
                                "leaf_hash": B64,
                                "data": B64,
                                "event": {"type": "object"},
                            },
                        },
                    ),
                    "400": _problem("malformed index"),
                    "404": _problem("beyond the tree"),
                },
            }
        },
    },
    "components": {
        "schemas": {
            "Problem": {
                "type": "object",
                "description": "RFC 9457 problem details",
                "required": ["type", "title", "status"],
                "properties": {
                    "type": {"type": "string", "format": "uri"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                },
            }
        }
    },
}


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(SPEC)


def setup(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi)
