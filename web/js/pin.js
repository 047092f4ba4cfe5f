// The log key the user pinned in this browser, and the checkpoint history held against it.
// The console and the patient page share both: one pin, one history per log key.

import { checkGrowth, rootText } from "./audit.js";
import { parseVkey } from "./note.js";
import * as store from "./store.js";

export const PINNED = "pinned-vkey";
const seenKey = (vkey) => `seen-checkpoint:${vkey}`;

/** {pinned: {vkey, pinnedAt}, verifier} or {pinned: null, verifier: null}; throws when the
 * stored key cannot be parsed (the caller says so). */
export async function loadPin() {
  const pinned = (await store.get(store.SETTINGS, PINNED)) ?? null;
  if (!pinned) return { pinned: null, verifier: null };
  return { pinned, verifier: await parseVkey(pinned.vkey) };
}

/** Pin `text` (a C2SP vkey); returns the same as loadPin(). Throws if it is not a vkey. */
export async function savePin(text) {
  const verifier = await parseVkey(text);
  const pinned = { vkey: verifier.vkey, pinnedAt: new Date().toISOString() };
  await store.put(store.SETTINGS, PINNED, pinned);
  return { pinned, verifier };
}

export const removePin = () => store.remove(store.SETTINGS, PINNED);

/** The vkey this server says it uses (to offer, never to trust by itself). */
export async function servedVkey() {
  const resp = await fetch("/ledger/vkey", { cache: "no-store" });
  if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
  return (await resp.text()).trim();
}

/**
 * Hold a checkpoint verified with the pinned key to the one this browser saw before from
 * that log: {state: "ok"|"fail", text}, or null when the signature did not verify (only a
 * checkpoint signed by the pinned key may become the one later ones are held to).
 */
export async function checkHistory(checkpoint, signature, verifier) {
  if (signature.state !== "ok") return null;
  const key = seenKey(verifier.vkey);
  const seen = await store.get(store.SETTINGS, key);
  const remember = () =>
    store.put(store.SETTINGS, key, {
      size: checkpoint.size,
      root: rootText(checkpoint),
      at: new Date().toISOString(),
    });
  if (!seen) {
    await remember();
    return { state: "ok", text: "first checkpoint this browser has seen from this log" };
  }
  try {
    await checkGrowth(seen, checkpoint, async (old, size) => {
      const resp = await fetch(`/ledger/proof/consistency?old=${old}&new=${size}`);
      if (!resp.ok) throw new Error(`no consistency proof (HTTP ${resp.status})`);
      const body = await resp.json();
      return body.consistency_proof ?? body.proof; // proof: before 0.2.0
    });
  } catch (e) {
    return { state: "fail", text: e.message };
  }
  if (checkpoint.size > seen.size) await remember();
  return { state: "ok", text: `extends the checkpoint of size ${seen.size} you saw before` };
}
