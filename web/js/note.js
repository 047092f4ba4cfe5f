// C2SP signed-note and tlog-checkpoint verification in the browser (WebCrypto Ed25519).
// A port of ledger/note.py and ledger/checkpoint.py: byte for byte the same formats.
//
//   vkey        name "+" hex(key id) "+" base64(0x01 || 32-byte Ed25519 public key)
//   key id      first 4 bytes, big-endian, of SHA-256(name || 0x0A || 0x01 || public key)
//   note        text (ending in "\n"), a blank line, then lines "— name base64(id || sig)"
//   checkpoint  note text "origin\nsize\nbase64(root)\n" plus optional extension lines

import { b64decode, concat, sha256, utf8 } from "./codec.js";

export const ALG_ED25519 = 0x01;
export const MAX_NOTE_SIZE = 64 * 1024;
const MAX_SIGNATURES = 100;
const EM_DASH = "\u2014 ";

export class InvalidNote extends Error {
  name = "InvalidNote";
  /** `detail`: more to show where there is room (who did sign, for instance). */
  constructor(message, detail = "") {
    super(message);
    this.detail = detail;
  }
}

function checkName(name) {
  if (!name || name.includes("+") || /\s/u.test(name)) {
    throw new InvalidNote(`invalid key name ${JSON.stringify(name)}`);
  }
}

function b64(s, what) {
  try {
    return b64decode(s);
  } catch {
    throw new InvalidNote(`${what}: malformed base64`);
  }
}

/** SHA-256(name || 0x0A || alg || public)[:4] as an unsigned 32-bit number. */
export async function keyId(name, alg, publicKey) {
  const d = await sha256(concat(utf8(name), Uint8Array.of(0x0a, alg), publicKey));
  return new DataView(d.buffer).getUint32(0);
}

const hex8 = (n) => n.toString(16).padStart(8, "0");

/**
 * Parse and check a verifier key. Returns {name, keyId, vkey, key} where `key` is a
 * WebCrypto Ed25519 public key. Throws InvalidNote.
 */
export async function parseVkey(vkey) {
  const text = String(vkey).trim();
  // name "+" id "+" key: the base64 key may itself contain "+", so split twice only.
  const m = /^([^+]*)\+([0-9a-fA-F]{8})\+(.*)$/s.exec(text);
  if (!m) throw new InvalidNote("a vkey looks like name+01234567+base64");
  const [, name, hexId, keyB64] = m;
  checkName(name);
  const blob = b64(keyB64, "vkey");
  if (blob.length !== 33 || blob[0] !== ALG_ED25519) {
    throw new InvalidNote("only Ed25519 verifier keys are supported");
  }
  const publicKey = blob.slice(1);
  const id = await keyId(name, ALG_ED25519, publicKey);
  if (id !== parseInt(hexId, 16)) throw new InvalidNote("the vkey's key id does not match its key");
  let key;
  try {
    key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
  } catch (e) {
    throw new InvalidNote(`this browser cannot verify Ed25519 signatures (${e.name})`);
  }
  return { name, keyId: id, hexId: hex8(id), vkey: text, key };
}

/** Split a signed note into its text and signature lines (form only). Throws InvalidNote. */
export function parseNote(note) {
  if (typeof note !== "string") throw new InvalidNote("the note is not text");
  if (utf8(note).length > MAX_NOTE_SIZE) throw new InvalidNote("the note is too large");
  // signed-note: no control characters other than newline.
  if (/[\u0000-\u0009\u000b-\u001f]/.test(note)) {
    throw new InvalidNote("the note contains control characters");
  }
  const split = note.lastIndexOf("\n\n");
  if (split < 0 || !note.endsWith("\n")) throw new InvalidNote("the note has no signatures");
  const text = note.slice(0, split + 1);
  const lines = note.slice(split + 2).split("\n").slice(0, -1);
  if (lines.length > MAX_SIGNATURES) throw new InvalidNote("too many signatures");
  const signatures = lines.map((line) => {
    if (!line.startsWith(EM_DASH)) throw new InvalidNote("malformed signature line");
    const rest = line.slice(EM_DASH.length);
    const sp = rest.indexOf(" ");
    if (sp < 0 || rest.indexOf(" ", sp + 1) >= 0) {
      throw new InvalidNote("malformed signature line");
    }
    const name = rest.slice(0, sp);
    checkName(name);
    const blob = b64(rest.slice(sp + 1), "signature");
    if (blob.length < 5) throw new InvalidNote("signature too short");
    const id = new DataView(blob.buffer).getUint32(0);
    return { name, keyId: id, signature: blob.slice(4) };
  });
  if (!signatures.length) throw new InvalidNote("the note has no signatures");
  return { text, signatures };
}

/**
 * Verify a note against one verifier (from parseVkey). Lines by other keys are ignored, as
 * the spec requires; a line by this key that fails rejects the note. Returns the parsed
 * note. Throws InvalidNote.
 */
export async function openNote(note, verifier) {
  const parsed = parseNote(note);
  const msg = utf8(parsed.text);
  let signed = false;
  for (const sig of parsed.signatures) {
    if (sig.name !== verifier.name || sig.keyId !== verifier.keyId) continue;
    let ok = false;
    try {
      ok = await crypto.subtle.verify({ name: "Ed25519" }, verifier.key, sig.signature, msg);
    } catch {
      ok = false;
    }
    if (!ok) throw new InvalidNote(`the signature by ${verifier.name} does not verify`);
    signed = true;
  }
  if (!signed) {
    const by = parsed.signatures.map((s) => `${s.name} (${hex8(s.keyId)})`).join(", ");
    throw new InvalidNote("no signature by the pinned key", `the note is signed by ${by}`);
  }
  return parsed;
}

export class InvalidCheckpoint extends InvalidNote {
  name = "InvalidCheckpoint";
}

/** Parse a tlog-checkpoint note text into {origin, size, root, extensions}. */
export function parseCheckpoint(text) {
  if (!text.endsWith("\n")) throw new InvalidCheckpoint("checkpoint must end in a newline");
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3) throw new InvalidCheckpoint("checkpoint needs origin, size and root");
  const [origin, sizeText, rootText, ...extensions] = lines;
  if (!origin) throw new InvalidCheckpoint("empty origin");
  if (!/^(0|[1-9][0-9]*)$/.test(sizeText)) throw new InvalidCheckpoint("malformed tree size");
  const size = Number(sizeText);
  if (!Number.isSafeInteger(size)) throw new InvalidCheckpoint("tree size out of range");
  let root;
  try {
    root = b64decode(rootText);
  } catch {
    throw new InvalidCheckpoint("malformed root hash");
  }
  if (root.length !== 32) throw new InvalidCheckpoint("root hash is not 32 bytes");
  if (extensions.some((e) => !e)) throw new InvalidCheckpoint("empty extension line");
  return { origin, size, root, rootText, extensions };
}

/**
 * Verify a signed checkpoint with the log's verifier and parse it. The origin must be the
 * key's name, as for ledger.checkpoint.open_checkpoint. Throws InvalidNote.
 */
export async function openCheckpoint(note, verifier) {
  const { text } = await openNote(note, verifier);
  const cp = parseCheckpoint(text);
  if (cp.origin !== verifier.name) {
    throw new InvalidCheckpoint(`origin ${cp.origin} is not the pinned key's ${verifier.name}`);
  }
  return cp;
}
