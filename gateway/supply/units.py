"""The units an event concerns beyond those it names (the contents of a shipped case, every
unit of a recalled lot) as one RFC 6962 Merkle tree: the ledger entry holds its size and
root, whatever the count, and a unit's history carries its inclusion proof. Pure: no I/O."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from ledger.errors import InvalidProof
from ledger.merkle import inclusion_proof, leaf_hash, root_of, verify_inclusion

__all__ = ["moved_summary", "unit_proof", "verify_unit"]


def _leaves(units: Sequence[str]) -> list[bytes]:
    return [leaf_hash(u.encode()) for u in sorted(set(units))]


def moved_summary(units: Sequence[str]) -> dict[str, Any]:
    """What the ledger entry says of ``units``: how many, and their tree's root (base64)."""
    leaves = _leaves(units)
    return {"count": len(leaves), "root": base64.b64encode(root_of(leaves)).decode()}


def unit_proof(unit: str, units: Sequence[str]) -> dict[str, Any]:
    """The inclusion proof of ``unit`` among ``units`` (sorted, each once). Raises
    InvalidProof when it is not among them."""
    ordered = sorted(set(units))
    try:
        index = ordered.index(unit)
    except ValueError as e:
        raise InvalidProof(f"{unit} is not among the event's units") from e
    leaves = _leaves(ordered)

    def read(nodes: Sequence[tuple[int, int]]) -> list[bytes]:
        return [root_of(leaves[i << level : (i + 1) << level]) for level, i in nodes]

    proof = inclusion_proof(index, len(leaves), read)
    return {
        "index": index,
        "size": len(leaves),
        # ``proof``: the old spelling, sent until 0.2.0 (docs/api-changes.md).
        "inclusion_proof": (path := [base64.b64encode(p).decode() for p in proof]),
        "proof": path,
    }


def verify_unit(unit: str, proof: Any, summary: Any) -> None:
    """Check that ``unit`` is among the units a ledger entry's ``summary`` stands for.
    Raises InvalidProof."""
    try:
        root = base64.b64decode(summary["root"], validate=True)
        size, index = int(summary["count"]), int(proof["index"])
        hashes = proof["inclusion_proof"] if "inclusion_proof" in proof else proof["proof"]
        path = [base64.b64decode(p, validate=True) for p in hashes]
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidProof(f"malformed unit proof: {e}") from e
    if int(proof.get("size", -1)) != size:
        raise InvalidProof("the unit proof is for another count of units")
    verify_inclusion(index, size, leaf_hash(unit.encode()), path, root)
