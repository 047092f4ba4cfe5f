// Checks of an audit answer in the browser, trusting nothing the server says about itself:
// the same checks as gateway/audit/check.py, with the log key the user pinned.
//
// Each row's event is re-encoded (RFC 8785) into its leaf and hashed; that hash must be the
// row's leaf hash and its inclusion proof must lead to the root of the page's checkpoint;
// the checkpoint must be signed by the pinned key. A row is verified only if all hold.

import { b64decode, b64encode, equalBytes, fromUtf8, utf8 } from "./codec.js";
import { canonicalize } from "./jcs.js";
import { leafHash, verifyConsistency, verifyInclusion } from "./merkle.js";
import { openCheckpoint, parseCheckpoint, parseNote } from "./note.js";

const reasonOf = (e) => (e && e.message) || String(e);

/**
 * The page's checkpoint: {checkpoint, signature: {state, reason, detail?}}; state is "ok",
 * "fail" or "unchecked" (no pinned key). `checkpoint` is the parsed body, or null when the
 * note cannot be parsed at all. Never throws.
 */
export async function checkCheckpoint(page, verifier) {
  let checkpoint = null;
  try {
    checkpoint = parseCheckpoint(parseNote(page.checkpoint).text);
  } catch (e) {
    return { checkpoint, signature: { state: "fail", reason: reasonOf(e) } };
  }
  if (!verifier) {
    return { checkpoint, signature: { state: "unchecked", reason: "no log key pinned" } };
  }
  try {
    checkpoint = await openCheckpoint(page.checkpoint, verifier);
  } catch (e) {
    return { checkpoint, signature: { state: "fail", reason: reasonOf(e), detail: e.detail } };
  }
  if (page.size !== checkpoint.size) {
    const reason = `the page claims size ${page.size}, its checkpoint ${checkpoint.size}`;
    return { checkpoint, signature: { state: "fail", reason } };
  }
  return { checkpoint, signature: { state: "ok", reason: `signed by ${verifier.name}` } };
}

/**
 * The bytes of a row's leaf. Rows carry them (`leaf`, base64) since a JSON re-encoding of
 * the event may differ from them (numbers JavaScript cannot hold exactly); the event shown
 * must then be the one those bytes hold. Older answers without `leaf`: the RFC 8785 bytes
 * of the event.
 */
async function leafBytes(row) {
  const encoded = utf8(canonicalize(row.event));
  if (row.leaf === undefined) return encoded;
  const bytes = b64decode(row.leaf);
  let logged;
  try {
    logged = JSON.parse(fromUtf8(bytes));
  } catch {
    throw new Error("the row's leaf is not a JSON event");
  }
  // Both sides went through the same JSON parser, so an honest row compares equal.
  if (canonicalize(logged) !== canonicalize(row.event)) {
    throw new Error("the event shown is not the entry in the log (it differs from its leaf)");
  }
  return bytes;
}

/**
 * One row against a checkpoint body: {state, reason} with state "ok" or "fail". The leaf is
 * recomputed from the event shown, so an edited event fails even with an honest proof.
 */
export async function checkRow(row, checkpoint) {
  try {
    if (!checkpoint) throw new Error("no readable checkpoint to check against");
    if (!Number.isSafeInteger(row.index) || row.index < 0) throw new Error("no entry index");
    const leaf = await leafHash(await leafBytes(row));
    if (!equalBytes(leaf, b64decode(row.leaf_hash))) {
      throw new Error("the event shown is not the entry in the log (its leaf hash differs)");
    }
    const path = row.inclusion_proof ?? row.proof; // proof: before 0.2.0
    if (!Array.isArray(path)) throw new Error("no inclusion proof");
    const proof = path.map((p) => b64decode(p));
    await verifyInclusion(row.index, checkpoint.size, leaf, proof, checkpoint.root);
    return { state: "ok", reason: `entry ${row.index} is in the tree of size ${checkpoint.size}` };
  } catch (e) {
    return { state: "fail", reason: reasonOf(e) };
  }
}

/** Check a whole page: {checkpoint, signature, rows: [{row, inclusion, ok}]}. Never throws. */
export async function checkPage(page, verifier) {
  const { checkpoint, signature } = await checkCheckpoint(page, verifier);
  const rows = [];
  for (const row of Array.isArray(page.rows) ? page.rows : []) {
    const inclusion = await checkRow(row, checkpoint);
    rows.push({ row, inclusion, ok: inclusion.state === "ok" && signature.state === "ok" });
  }
  return { checkpoint, signature, rows };
}

/**
 * The log only grew from `seen` ({size, root} base64, a checkpoint verified earlier) to the
 * verified `checkpoint`. `fetchProof(old, size)` returns the base64 consistency proof.
 * Throws with the reason when it did not (a smaller log, or a fork).
 */
export async function checkGrowth(seen, checkpoint, fetchProof) {
  if (checkpoint.size < seen.size) {
    throw new Error(
      `the log shrank from ${seen.size} to ${checkpoint.size} entries since you last saw it`,
    );
  }
  const proof = checkpoint.size === seen.size ? [] : await fetchProof(seen.size, checkpoint.size);
  try {
    await verifyConsistency(
      seen.size,
      checkpoint.size,
      b64decode(seen.root),
      checkpoint.root,
      proof.map((p) => b64decode(p)),
    );
  } catch (e) {
    const sizes = `checkpoint ${checkpoint.size} is not an extension of ${seen.size}`;
    throw new Error(`${sizes} seen before: ${reasonOf(e)}`);
  }
}

export const rootText = (checkpoint) => b64encode(checkpoint.root);
