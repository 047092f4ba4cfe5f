"""Hypothesis: every proof over random trees verifies; any corruption fails."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidProof
from ledger.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    inclusion_proofs,
    leaf_hash,
    node_hash,
    root_of,
    tree_hash,
    verify_consistency,
    verify_inclusion,
)

MAX = 3000
_LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(MAX)]


def _reference_root(hashes: Sequence[bytes]) -> bytes:
    # RFC 9162 2.1.1 MTH, recursively, as the spec states it.
    n = len(hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return hashes[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(_reference_root(hashes[:k]), _reference_root(hashes[k:]))


def _nodes(size: int) -> dict[tuple[int, int], bytes]:
    nodes = {(0, i): h for i, h in enumerate(_LEAVES[:size])}
    level = 0
    while (size >> level) > 1:
        for i in range(size >> (level + 1)):
            nodes[(level + 1, i)] = node_hash(nodes[(level, 2 * i)], nodes[(level, 2 * i + 1)])
        level += 1
    return nodes


_CACHE: dict[int, dict[tuple[int, int], bytes]] = {}


def reader(size: int):  # type: ignore[no-untyped-def]
    nodes = _CACHE.setdefault(size, _nodes(size))
    return lambda req: [nodes[n] for n in req]


def _shape(index: int, size: int) -> list[str]:
    # RFC 9162 2.1.3.1 PATH(m, D[n]): which side each sibling is on, bottom-up.
    if size == 1:
        return []
    k = 1 << ((size - 1).bit_length() - 1)
    if index < k:
        return [*_shape(index, k), "right"]
    return [*_shape(index - k, size - k), "left"]


def _cshape(m: int, n: int, complete: bool = True) -> list[str]:
    # RFC 9162 2.1.4.1 SUBPROOF(m, D[n], b): the structure a consistency proof encodes.
    if m == n:
        return [] if complete else ["old"]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*_cshape(m, k, complete), "right"]
    return [*_cshape(m - k, n - k, False), "left"]


def _flip(proof: list[bytes], i: int, bit: int) -> list[bytes]:
    p = list(proof)
    b = bytearray(p[i])
    b[bit // 8] ^= 1 << (bit % 8)
    p[i] = bytes(b)
    return p


@pytest.mark.parametrize("size", [0, 1, 2, 3, 7, 8, 9, 255, 256, 257, 1000])
def test_root_matches_the_rfc_definition(size: int) -> None:
    want = _reference_root(_LEAVES[:size])
    assert root_of(_LEAVES[:size]) == want
    assert tree_hash(size, reader(size)) == want


sizes = st.integers(min_value=1, max_value=MAX)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), size=sizes)
def test_inclusion_proofs(data: st.DataObject, size: int) -> None:
    index = data.draw(st.integers(0, size - 1))
    root = tree_hash(size, reader(size))
    proof = inclusion_proof(index, size, reader(size))
    verify_inclusion(index, size, _LEAVES[index], proof, root)
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        with pytest.raises(InvalidProof):
            verify_inclusion(index, size, _LEAVES[index], _flip(proof, i, bit), root)
    other = data.draw(st.integers(0, size - 1))
    if other != index:
        with pytest.raises(InvalidProof):
            verify_inclusion(other, size, _LEAVES[index], proof, root)
    wrong_size = data.draw(st.integers(1, MAX))
    # The size is authenticated by the signed checkpoint, not by the proof: a proof also
    # "verifies" for another size whose audit path has the same shape. Every other size fails.
    if index < wrong_size and _shape(index, wrong_size) != _shape(index, size):
        with pytest.raises(InvalidProof):
            verify_inclusion(index, wrong_size, _LEAVES[index], proof, root)
    with pytest.raises(InvalidProof):
        verify_inclusion(index, size, leaf_hash(b"not a leaf"), proof, root)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), new=sizes)
def test_consistency_proofs(data: st.DataObject, new: int) -> None:
    old = data.draw(st.integers(0, new))
    old_root = tree_hash(old, reader(old))
    new_root = tree_hash(new, reader(new))
    proof = consistency_proof(old, new, reader(new))
    verify_consistency(old, new, old_root, new_root, proof)
    if old in (0, new):
        assert proof == []
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        with pytest.raises(InvalidProof):
            verify_consistency(old, new, old_root, new_root, _flip(proof, i, bit))
    if 0 < old < new:
        wrong_old = data.draw(st.integers(1, new - 1))
        if _cshape(wrong_old, new) != _cshape(old, new):
            with pytest.raises(InvalidProof):
                verify_consistency(wrong_old, new, old_root, new_root, proof)
        wrong_new = data.draw(st.integers(old + 1, MAX))
        if _cshape(old, wrong_new) != _cshape(old, new):
            with pytest.raises(InvalidProof):
                verify_consistency(old, wrong_new, old_root, new_root, proof)
        with pytest.raises(InvalidProof):
            verify_consistency(old, new, new_root, old_root, proof)


def test_index_out_of_range() -> None:
    with pytest.raises(InvalidProof):
        inclusion_proof(5, 5, reader(5))
    with pytest.raises(InvalidProof):
        consistency_proof(6, 5, reader(5))
    with pytest.raises(InvalidProof):
        verify_inclusion(0, 0, _LEAVES[0], [], EMPTY_ROOT)


def test_consistency_from_zero_is_empty_and_valid() -> None:
    assert consistency_proof(0, 10, reader(10)) == []
    verify_consistency(0, 10, EMPTY_ROOT, tree_hash(10, reader(10)), [])


@settings(max_examples=200, deadline=None)
@given(data=st.data(), size=sizes)
def test_batch_proofs_equal_single_proofs(data: st.DataObject, size: int) -> None:
    start = data.draw(st.integers(0, size - 1))
    end = data.draw(st.integers(start, min(size, start + 300)))
    got = inclusion_proofs(start, end, size, reader(size))
    assert got == [inclusion_proof(i, size, reader(size)) for i in range(start, end)]


def test_batch_proofs_reject_ranges_outside_the_tree() -> None:
    with pytest.raises(InvalidProof):
        inclusion_proofs(3, 6, 5, reader(5))


@settings(max_examples=100, deadline=None)
@given(data=st.data(), size=sizes)
def test_scattered_proofs_equal_single_proofs(data: st.DataObject, size: int) -> None:
    from ledger.merkle import inclusion_proofs_for

    indices = data.draw(st.lists(st.integers(0, size - 1), max_size=50))
    got = inclusion_proofs_for(indices, size, reader(size))
    assert got == [inclusion_proof(i, size, reader(size)) for i in indices]
