// Bytes, text and base64: the few conversions every other module needs.
// Strict decoders: a malformed value from the server is an error, never silently repaired.

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

export const utf8 = (s) => enc.encode(s);
export const fromUtf8 = (b) => dec.decode(b);

const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Standard base64 (RFC 4648 section 4, padded) to bytes; throws on anything else. */
export function b64decode(s) {
  if (typeof s !== "string" || !B64.test(s)) throw new TypeError("malformed base64");
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function b64encode(bytes) {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

/** base64url without padding (RFC 7515), as JOSE uses it. */
export const b64url = (bytes) =>
  b64encode(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

export const b64urlJson = (value) => b64url(utf8(JSON.stringify(value)));

const B64URL = /^[A-Za-z0-9_-]*$/;

/** base64url, padded or not, to bytes; throws on anything else. */
export function b64urlDecode(s) {
  if (typeof s !== "string") throw new TypeError("malformed base64url");
  const bare = s.replace(/=+$/, "");
  if (!B64URL.test(bare) || bare.length % 4 === 1) throw new TypeError("malformed base64url");
  const std = bare.replace(/-/g, "+").replace(/_/g, "/");
  return b64decode(std + "=".repeat((4 - (std.length % 4)) % 4));
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

/** 16 random bytes, base64url: for JWT ids. */
export const randomId = () => b64url(crypto.getRandomValues(new Uint8Array(16)));

export const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
