"""RFC 6962 / RFC 9162 Merkle tree hashing and proofs. Pure: no I/O.

Proof *generation* works over any store of complete-subtree hashes: the caller passes a
``NodeReader`` that returns the hashes of aligned complete subtrees ``(level, index)``
(the subtree over leaves ``[index * 2**level, (index + 1) * 2**level)``). Incomplete right
edges are combined from at most ``log2(n)`` complete subtrees, so no proof rehashes the tree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from .errors import InvalidProof

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "NodeReader",
    "consistency_proof",
    "inclusion_proof",
    "inclusion_proofs",
    "inclusion_proofs_for",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion",
    "root_of",
    "subtree_nodes",
    "tree_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
# RFC 9162 2.1.1: the hash of an empty list is the hash of the empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeReader = Callable[[Sequence[tuple[int, int]]], list[bytes]]
"""Returns the hashes of the given complete subtrees ``(level, index)``, in order."""

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 2.1.1: ``SHA-256(0x00 || data)``."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 2.1.1: ``SHA-256(0x01 || left || right)``."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of a list of leaf hashes (iterative, O(n))."""
    if not leaf_hashes:
        return EMPTY_ROOT
    # A stack of (level, hash) holding the frontier of complete subtrees.
    stack: list[tuple[int, bytes]] = []
    for h in leaf_hashes:
        level = 0
        while stack and stack[-1][0] == level:
            h = node_hash(stack.pop()[1], h)
            level += 1
        stack.append((level, h))
    return fold_right([h for _, h in stack])


def fold_right(hashes: Sequence[bytes]) -> bytes:
    """Combine a left-to-right list of subtree hashes into the hash of their union.

    The subtrees must be the RFC 6962 decomposition of a range (each one larger than the
    next), so the right edge is hashed first.
    """
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


def subtree_nodes(lo: int, hi: int) -> list[tuple[int, int]]:
    """Decompose leaves ``[lo, hi)`` into maximal aligned complete subtrees, left to right.

    ``lo`` must be aligned as RFC 6962 splits are (a multiple of the largest power of two
    that fits in ``hi - lo``'s left part), which holds for every range a proof asks for.
    """
    out: list[tuple[int, int]] = []
    while lo < hi:
        size = hi - lo
        # Largest power of two that fits and keeps alignment at lo.
        level = size.bit_length() - 1
        if lo:
            level = min(level, (lo & -lo).bit_length() - 1)
        out.append((level, lo >> level))
        lo += 1 << level
    return out


def tree_hash(size: int, read: NodeReader) -> bytes:
    """The root of the tree of ``size`` leaves, from stored complete subtrees."""
    if size == 0:
        return EMPTY_ROOT
    return fold_right(read(subtree_nodes(0, size)))


def _ranges_hash(ranges: list[tuple[int, int]], read: NodeReader) -> list[bytes]:
    """Hash each range with one read call for all of their subtrees."""
    parts = [subtree_nodes(lo, hi) for lo, hi in ranges]
    flat = [node for nodes in parts for node in nodes]
    hashes = read(flat) if flat else []
    out: list[bytes] = []
    pos = 0
    for nodes in parts:
        out.append(fold_right(hashes[pos : pos + len(nodes)]))
        pos += len(nodes)
    return out


def _inclusion_ranges(index: int, lo: int, hi: int) -> list[tuple[int, int]]:
    # RFC 9162 2.1.3.1 PATH(m, D[n]), with the subtree given by offsets; returns the
    # sibling ranges bottom-up, the order the proof lists them in.
    out: list[tuple[int, int]] = []
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo = lo + k
    out.reverse()
    return out


def inclusion_proof(index: int, size: int, read: NodeReader) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``size`` leaves.

    Raises :class:`InvalidProof` if ``index >= size``.
    """
    if not 0 <= index < size:
        raise InvalidProof(f"index {index} is not in a tree of size {size}")
    return _ranges_hash(_inclusion_ranges(index, 0, size), read)


def inclusion_proofs(start: int, end: int, size: int, read: NodeReader) -> list[list[bytes]]:
    """Audit paths of leaves ``start..end-1`` in one tree (the leaves of one group commit).

    One walk down the RFC 9162 2.1.3.1 recursion visits each subtree that holds a wanted
    leaf once, so shared upper siblings are hashed once rather than once per leaf.
    """
    if not 0 <= start <= end <= size:
        raise InvalidProof(f"leaves {start}..{end} are not in a tree of size {size}")
    if start == end:
        return []
    # Pass 1: the sibling range of every visited subtree, in visiting order.
    sibling_ranges: list[tuple[int, int]] = []
    todo = [(0, size)]
    while todo:
        lo, hi = todo.pop()
        if hi - lo == 1:
            continue
        mid = lo + _split(hi - lo)
        if mid < end and hi > start:
            todo.append((mid, hi))
            sibling_ranges.append((lo, mid))
        if lo < end and mid > start:
            todo.append((lo, mid))
            sibling_ranges.append((mid, hi))
    hashed = dict(zip(sibling_ranges, _ranges_hash(sibling_ranges, read), strict=True))
    # Pass 2: depth-first, left to right, carrying the path of siblings from the root.
    out: list[list[bytes]] = []
    path: list[bytes] = []

    def walk(lo: int, hi: int) -> None:
        if hi - lo == 1:
            out.append(path[::-1])
            return
        mid = lo + _split(hi - lo)
        if lo < end and mid > start:
            path.append(hashed[(mid, hi)])
            walk(lo, mid)
            path.pop()
        if mid < end and hi > start:
            path.append(hashed[(lo, mid)])
            walk(mid, hi)
            path.pop()

    walk(0, size)
    return out


def inclusion_proofs_for(indices: Sequence[int], size: int, read: NodeReader) -> list[list[bytes]]:
    """Audit paths of any leaves of one tree, reading every distinct node once.

    For scattered leaves (a page of audit rows); a contiguous run is cheaper with
    :func:`inclusion_proofs`.
    """
    paths = []
    for index in indices:
        if not 0 <= index < size:
            raise InvalidProof(f"index {index} is not in a tree of size {size}")
        paths.append(_inclusion_ranges(index, 0, size))
    distinct = list(dict.fromkeys(r for path in paths for r in path))
    hashed = dict(zip(distinct, _ranges_hash(distinct, read), strict=True))
    return [[hashed[r] for r in path] for path in paths]


def _consistency_ranges(m: int, lo: int, hi: int) -> list[tuple[int, int]]:
    # RFC 9162 2.1.4.1 SUBPROOF(m, D[n], b), iterative; ranges come out top-down and are
    # reversed at the end so that the proof is bottom-up.
    out: list[tuple[int, int]] = []
    complete = True
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                out.append((lo, hi))
            break
        k = _split(n)
        if m <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo, m = lo + k, m - k
            complete = False
    out.reverse()
    return out


def consistency_proof(old: int, new: int, read: NodeReader) -> list[bytes]:
    """The RFC 9162 consistency proof between tree sizes ``old`` and ``new``.

    A proof from size 0, or between equal sizes, is empty. Raises :class:`InvalidProof` if
    ``old > new``.
    """
    if not 0 <= old <= new:
        raise InvalidProof(f"cannot prove size {old} consistent with size {new}")
    if old in (0, new):
        return []
    return _ranges_hash(_consistency_ranges(old, 0, new), read)


def _check(h: bytes, what: str) -> None:
    if len(h) != HASH_SIZE:
        raise InvalidProof(f"{what} is {len(h)} bytes, not {HASH_SIZE}")


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root implied by an inclusion proof (RFC 9162 2.1.3.2). Raises InvalidProof."""
    if not 0 <= index < size:
        raise InvalidProof(f"index {index} is not in a tree of size {size}")
    _check(leaf, "leaf hash")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        _check(p, "proof node")
        if sn == 0:
            raise InvalidProof("proof is longer than the path")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # Skip levels where this node has no right sibling (the right edge).
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof("proof is shorter than the path")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf`` is at ``index`` of the tree ``(size, root)``. Raises InvalidProof."""
    _check(root, "root")
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise InvalidProof("inclusion proof does not lead to the root")


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that tree ``(old, old_root)`` is a prefix of ``(new, new_root)``.

    Follows RFC 9162 2.1.4.2. A proof from size 0 is valid when empty. Raises InvalidProof.
    """
    if not 0 <= old <= new:
        raise InvalidProof(f"size {old} cannot precede size {new}")
    # RFC 9162 2.1.1 defines the empty tree's root: a claimed root for size 0 must be it.
    if old == 0 and old_root != EMPTY_ROOT:
        raise InvalidProof("the root of the empty tree is SHA-256 of the empty string")
    # Equal sizes compare the roots as given (the transparency-dev vectors require this
    # even for values that are not 32 bytes); every other path checks hash lengths.
    if old == new:
        if proof:
            raise InvalidProof("proof between equal sizes must be empty")
        if old_root != new_root:
            raise InvalidProof("equal sizes with different roots")
        return
    if old == 0:
        # Every tree extends the empty tree: the proof is empty (the new root is still
        # checked for form, since the caller will go on to trust it).
        if proof:
            raise InvalidProof("proof from the empty tree must be empty")
        _check(new_root, "new root")
        return
    if not proof:
        raise InvalidProof("empty consistency proof")
    _check(old_root, "old root")
    _check(new_root, "new root")
    for p in proof:
        _check(p, "proof node")
    path = list(proof)
    # Step 1: when old is a power of two its root is the first node of the path.
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise InvalidProof("proof is longer than the path")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof("proof is shorter than the path")
    if fr != old_root:
        raise InvalidProof("consistency proof does not lead to the old root")
    if sr != new_root:
        raise InvalidProof("consistency proof does not lead to the new root")
