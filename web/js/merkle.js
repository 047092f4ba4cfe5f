// RFC 6962 / RFC 9162 Merkle tree verification in the browser (WebCrypto SHA-256).
// A port of ledger/merkle.py's verifiers: verify* return nothing or throw InvalidProof.
//
// Tree sizes and indexes are JavaScript numbers: exact up to 2^53, and halved with
// arithmetic rather than bit operators (which would truncate them to 32 bits).

import { concat, equalBytes, hex, sha256 } from "./codec.js";

export const HASH_SIZE = 32;

export class InvalidProof extends Error {
  name = "InvalidProof";
}

const LEAF = Uint8Array.of(0);
const NODE = Uint8Array.of(1);

/** RFC 9162 2.1.1: SHA-256(0x00 || data). */
export const leafHash = (data) => sha256(concat(LEAF, data));

/** RFC 9162 2.1.1: SHA-256(0x01 || left || right). */
export const nodeHash = (left, right) => sha256(concat(NODE, left, right));

const odd = (n) => n % 2 === 1;
const half = (n) => Math.floor(n / 2);

function checkLength(h, what) {
  if (!(h instanceof Uint8Array) || h.length !== HASH_SIZE) {
    throw new InvalidProof(`${what} is not ${HASH_SIZE} bytes`);
  }
}

function checkSize(n, what) {
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidProof(`${what} is not a tree size`);
}

/** The root implied by an inclusion proof (RFC 9162 2.1.3.2). Throws InvalidProof. */
export async function rootFromInclusion(index, size, leaf, proof) {
  checkSize(index, "index");
  checkSize(size, "size");
  if (index >= size) throw new InvalidProof(`index ${index} is not in a tree of size ${size}`);
  checkLength(leaf, "leaf hash");
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    checkLength(p, "proof node");
    if (sn === 0) throw new InvalidProof("proof is longer than the path");
    if (odd(fn) || fn === sn) {
      r = await nodeHash(p, r);
      // Levels where this node has no right sibling (the right edge) are skipped.
      while (!odd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) throw new InvalidProof("proof is shorter than the path");
  return r;
}

/** Check that `leaf` is at `index` of the tree (size, root). Throws InvalidProof. */
export async function verifyInclusion(index, size, leaf, proof, root) {
  checkLength(root, "root");
  const got = await rootFromInclusion(index, size, leaf, proof);
  if (!equalBytes(got, root)) {
    throw new InvalidProof("inclusion proof does not lead to the checkpoint's root");
  }
}

const EMPTY_ROOT_HEX = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** Check that tree (old, oldRoot) is a prefix of (size, newRoot) (RFC 9162 2.1.4.2). */
export async function verifyConsistency(old, size, oldRoot, newRoot, proof) {
  checkSize(old, "old size");
  checkSize(size, "new size");
  if (old > size) throw new InvalidProof(`size ${old} cannot precede size ${size}`);
  // RFC 9162 2.1.1 defines the empty tree's root: a claimed root for size 0 must be it.
  if (old === 0 && hex(oldRoot) !== EMPTY_ROOT_HEX) {
    throw new InvalidProof("the root of the empty tree is SHA-256 of the empty string");
  }
  // Equal sizes compare the roots as given (as ledger/merkle.py and the transparency-dev
  // vectors do); every other path checks hash lengths.
  if (old === size) {
    if (proof.length) throw new InvalidProof("proof between equal sizes must be empty");
    if (!equalBytes(oldRoot, newRoot)) throw new InvalidProof("equal sizes with different roots");
    return;
  }
  if (old === 0) {
    if (proof.length) throw new InvalidProof("proof from the empty tree must be empty");
    checkLength(newRoot, "new root");
    return;
  }
  if (!proof.length) throw new InvalidProof("empty consistency proof");
  checkLength(oldRoot, "old root");
  checkLength(newRoot, "new root");
  proof.forEach((p) => checkLength(p, "proof node"));
  const path = [...proof];
  // Step 1: when the old size is a power of two its root is the first node of the path.
  if (2 ** Math.round(Math.log2(old)) === old) path.unshift(oldRoot);
  let fn = old - 1;
  let sn = size - 1;
  while (odd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) throw new InvalidProof("proof is longer than the path");
    if (odd(fn) || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      while (!odd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) throw new InvalidProof("proof is shorter than the path");
  if (!equalBytes(fr, oldRoot)) throw new InvalidProof("proof does not lead to the old root");
  if (!equalBytes(sr, newRoot)) throw new InvalidProof("proof does not lead to the new root");
}
