// The browser as an enrolled telegate client: the same protocol as tests/gateway/idclient.py.
//
//  - enroll(): a fresh WebCrypto key pair (Ed25519, else ECDSA P-256), the private half
//    non-extractable and kept in IndexedDB; the invite redeemed with the public JWK.
//  - tokens: client_credentials with a private_key_jwt client assertion signed here, bound
//    to the same key with a DPoP proof; the access token is kept in this module's memory
//    only (a reload asks for a new one), never in localStorage, sessionStorage or cookies.
//  - api() / apiFetch(): every call carries Authorization: DPoP <token> and a fresh proof
//    (htm, htu, iat, jti, ath); problem+json answers become ApiError with a readable message.

import { b64url, b64urlJson, randomId, sha256, utf8 } from "./codec.js";
import * as store from "./store.js";

const HOLDER_KEY = "self";
const ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
// Renew this long before the token expires, so a request never races its expiry.
const RENEW_MARGIN_MS = 30_000;

/** A refused or failed request; `message` is fit to show, `status` is the HTTP status. */
export class ApiError extends Error {
  name = "ApiError";
  constructor(message, { status = 0, problem = null } = {}) {
    super(message);
    this.status = status;
    this.problem = problem;
  }
}

export class NotEnrolled extends ApiError {
  name = "NotEnrolled";
  constructor() {
    super("This browser holds no telegate identity yet: open your invite link to enroll.");
  }
}

// -- keys ----------------------------------------------------------------------------

const SIGN = {
  EdDSA: { name: "Ed25519" },
  ES256: { name: "ECDSA", hash: "SHA-256" },
};

async function newKeyPair() {
  // Ed25519 where WebCrypto has it (Chromium does), else P-256: the gateway takes either.
  try {
    const keys = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    return { alg: "EdDSA", keys };
  } catch {
    const params = { name: "ECDSA", namedCurve: "P-256" };
    const keys = await crypto.subtle.generateKey(params, false, ["sign", "verify"]);
    return { alg: "ES256", keys };
  }
}

async function publicJwk(publicKey) {
  const full = await crypto.subtle.exportKey("jwk", publicKey);
  // Only the members RFC 7638 names: WebCrypto adds "alg":"Ed25519", key_ops and ext,
  // and the gateway refuses an alg other than the one it pins to the key type.
  const jwk = { kty: full.kty, crv: full.crv, x: full.x };
  if (full.kty === "EC") jwk.y = full.y;
  return jwk;
}

/** RFC 7638 thumbprint of a public JWK (members sorted, no whitespace). */
export async function thumbprint(jwk) {
  const names = jwk.kty === "EC" ? ["crv", "kty", "x", "y"] : ["crv", "kty", "x"];
  const canonical = JSON.stringify(Object.fromEntries(names.map((n) => [n, jwk[n]])));
  return b64url(await sha256(utf8(canonical)));
}

async function jws(holder, header, claims) {
  const input = `${b64urlJson({ ...header, alg: holder.alg })}.${b64urlJson(claims)}`;
  // WebCrypto's ECDSA signature is r || s, which is what JWS ES256 wants (RFC 7518 3.4).
  const sig = await crypto.subtle.sign(SIGN[holder.alg], holder.privateKey, utf8(input));
  return `${input}.${b64url(new Uint8Array(sig))}`;
}

// -- the holder in IndexedDB ------------------------------------------------------------

let holderPromise = null;

/** The enrolled identity of this browser ({sub, role, alg, jwk, jkt, privateKey, ...}) or null. */
export function loadHolder() {
  holderPromise ??= store.get(store.HOLDER, HOLDER_KEY).then((h) => h ?? null);
  return holderPromise;
}

async function requireHolder() {
  const holder = await loadHolder();
  if (!holder) throw new NotEnrolled();
  return holder;
}

/** Delete this browser's key (the identity stays enrolled on the gateway until revoked). */
export async function forget() {
  await store.remove(store.HOLDER, HOLDER_KEY);
  holderPromise = null;
  token = null;
}

// -- discovery, clock and nonce ---------------------------------------------------------

let discovery = null;
let clockOffsetMs = 0;
let dpopNonce = null;

function discover() {
  discovery ??= (async () => {
    const resp = await send("/.well-known/smart-configuration", { method: "GET" });
    if (!resp.ok) throw await errorOf(resp, "discovery");
    // Proofs and assertions carry times checked against the gateway's clock: follow it
    // when this device's clock is visibly off (the Date header has one-second resolution).
    const date = Date.parse(resp.headers.get("Date") ?? "");
    if (Number.isFinite(date) && Math.abs(date - Date.now()) > 5_000) {
      clockOffsetMs = date - Date.now();
    }
    const conf = await resp.json();
    return {
      issuer: String(conf.issuer).replace(/\/+$/, ""),
      tokenEndpoint: String(conf.token_endpoint),
    };
  })();
  discovery.catch(() => {
    discovery = null;
  });
  return discovery;
}

const now = () => Math.floor((Date.now() + clockOffsetMs) / 1000);

function noteNonce(resp) {
  const n = resp.headers.get("DPoP-Nonce");
  if (n) dpopNonce = n;
}

async function dpop(holder, method, htu, accessToken) {
  const claims = { jti: randomId(), htm: method, htu, iat: now() };
  if (accessToken) claims.ath = b64url(await sha256(utf8(accessToken)));
  if (dpopNonce) claims.nonce = dpopNonce;
  return jws(holder, { typ: "dpop+jwt", jwk: holder.jwk }, claims);
}

// -- HTTP ----------------------------------------------------------------------------

async function send(path, init) {
  try {
    return await fetch(path, { credentials: "omit", cache: "no-store", ...init });
  } catch (e) {
    throw new ApiError(`Cannot reach the gateway (${e.message}).`);
  }
}

export async function errorOf(resp, what) {
  let problem = null;
  const type = resp.headers.get("Content-Type") ?? "";
  if (type.includes("json")) {
    try {
      problem = await resp.json();
    } catch {
      problem = null;
    }
  }
  // RFC 9457: the title says what went wrong, the detail says why; both are for people.
  const said = problem?.title
    ? `${problem.title}${problem.detail ? `: ${problem.detail}` : ""}`
    : `${what} failed${resp.statusText ? ` (${resp.statusText})` : ""}`;
  return new ApiError(`${said} (HTTP ${resp.status})`, { status: resp.status, problem });
}

function wantsNonce(resp, problem) {
  if (!resp.headers.get("DPoP-Nonce")) return false;
  const auth = resp.headers.get("WWW-Authenticate") ?? "";
  return (
    auth.includes("use_dpop_nonce") ||
    problem?.error === "use_dpop_nonce" ||
    String(problem?.type ?? "").endsWith("/use-dpop-nonce")
  );
}

// -- enrollment -------------------------------------------------------------------------

/**
 * Redeem an invite with a new key pair generated here. On success the key is stored (it
 * replaces any earlier one) and {sub, role, jkt, receipt} from the gateway is returned.
 * Throws ApiError.
 */
export async function enroll(invite, fields = {}) {
  const code = String(invite ?? "").trim();
  if (!code || code.length > 128) throw new ApiError("Enter the invite code you were given.");
  const { alg, keys } = await newKeyPair();
  const jwk = await publicJwk(keys.publicKey);
  const jkt = await thumbprint(jwk);
  const resp = await send("/v1/enroll", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ...fields, invite: code, jwk }),
  });
  if (resp.status !== 201) throw await errorOf(resp, "Enrollment");
  const out = await resp.json();
  if (out.jkt !== jkt) throw new ApiError("The gateway enrolled a key other than this one.");
  const holder = {
    sub: out.sub,
    role: out.role,
    name: typeof out.display_name === "string" ? out.display_name : null,
    alg,
    jwk,
    jkt,
    privateKey: keys.privateKey,
    enrolled: new Date().toISOString(),
    ledgerIndex: out.receipt?.index ?? null,
  };
  await store.put(store.HOLDER, HOLDER_KEY, holder);
  holderPromise = Promise.resolve(holder);
  token = null;
  return out;
}

// -- demo identities --------------------------------------------------------------------

const SUBJECT = /^(adm|prov|pat|dev|aud):[0-9a-f]{32}$/;
const KEY_PART = /^[A-Za-z0-9_-]{43}$/; // 32 bytes, base64url without padding

/**
 * Keep an identity `make demo` already enrolled: {sub, role, d, x}, its Ed25519 private key
 * `d` and public key `x` (base64url). The key is imported non-extractable and stored like
 * an enrolled one, flagged `demo`; nothing is sent to the gateway. Returns the holder.
 * Throws ApiError when the blob is not a usable identity.
 */
export async function importDemo(blob) {
  const { sub, role, d, x } = blob && typeof blob === "object" ? blob : {};
  if (typeof sub !== "string" || !SUBJECT.test(sub)) {
    throw new ApiError("The demo link names no valid identity.");
  }
  if (!["patient", "provider", "auditor", "admin"].includes(role)) {
    throw new ApiError("The demo link is for a role this page cannot hold.");
  }
  if (typeof d !== "string" || typeof x !== "string" || !KEY_PART.test(d) || !KEY_PART.test(x)) {
    throw new ApiError("The demo link's key is malformed.");
  }
  const jwk = { kty: "OKP", crv: "Ed25519", x };
  let privateKey;
  try {
    // Not extractable: once imported, no script (this page included) can read it back.
    privateKey = await crypto.subtle.importKey("jwk", { ...jwk, d }, { name: "Ed25519" }, false, [
      "sign",
    ]);
  } catch (e) {
    throw new ApiError(`This browser cannot use the demo key (${e.message}).`);
  }
  const holder = {
    sub,
    role,
    alg: "EdDSA",
    jwk,
    jkt: await thumbprint(jwk),
    privateKey,
    enrolled: new Date().toISOString(),
    ledgerIndex: null,
    demo: true,
  };
  await store.put(store.HOLDER, HOLDER_KEY, holder);
  holderPromise = Promise.resolve(holder);
  token = null;
  return holder;
}

// -- tokens -------------------------------------------------------------------------------

let token = null; // {value, renewAt}: memory only, by design
let tokenPending = null;

async function requestToken(holder) {
  const { tokenEndpoint } = await discover();
  // The assertion's aud and the proof's htu name the public endpoint; the request itself
  // goes to this page's own origin (connect-src 'self').
  const path = new URL(tokenEndpoint).pathname;
  for (let attempt = 0; ; attempt++) {
    const t = now();
    // SMART Backend Services: iss = sub = client id, aud = the token endpoint, short-lived.
    const claims = { iss: holder.sub, sub: holder.sub, aud: tokenEndpoint, iat: t, exp: t + 120 };
    const assertion = await jws(holder, { typ: "JWT" }, { ...claims, jti: randomId() });
    const form = new URLSearchParams({
      grant_type: "client_credentials",
      client_assertion_type: ASSERTION_TYPE,
      client_assertion: assertion,
    });
    const resp = await send(path, {
      method: "POST",
      headers: { DPoP: await dpop(holder, "POST", tokenEndpoint) },
      body: form,
    });
    noteNonce(resp);
    if (resp.ok) {
      const body = await resp.json();
      const lifetime = Math.max(0, Number(body.expires_in) * 1000 - RENEW_MARGIN_MS);
      return { value: String(body.access_token), renewAt: Date.now() + lifetime };
    }
    const err = await errorOf(resp, "Token request");
    if (attempt === 0 && wantsNonce(resp, err.problem)) continue;
    throw err;
  }
}

async function accessToken(holder) {
  if (token && Date.now() < token.renewAt) return token.value;
  // One request for every caller waiting at the same moment.
  tokenPending ??= requestToken(holder).finally(() => {
    tokenPending = null;
  });
  token = await tokenPending;
  return token.value;
}

/**
 * fetch() a gateway path as the enrolled holder: Authorization: DPoP and a fresh proof.
 * `init` is fetch's; a `json` member is sent as an application/json body. Returns the
 * Response when it is a success; throws ApiError (with the problem+json text) otherwise.
 */
export async function apiFetch(path, init = {}) {
  const holder = await requireHolder();
  const { issuer } = await discover();
  const { json, ...rest } = init;
  const method = (rest.method ?? "GET").toUpperCase();
  const headers = new Headers(rest.headers);
  if (json !== undefined) {
    headers.set("Content-Type", "application/json");
    rest.body = JSON.stringify(json);
  }
  const url = new URL(path, location.origin);
  // RFC 9449 4.2: htu is the target URI without query and fragment.
  const htu = issuer + url.pathname;
  let retriedNonce = false;
  let retriedToken = false;
  for (;;) {
    const value = await accessToken(holder);
    headers.set("Authorization", `DPoP ${value}`);
    headers.set("DPoP", await dpop(holder, method, htu, value));
    const resp = await send(url.pathname + url.search, { ...rest, method, headers });
    noteNonce(resp);
    if (resp.ok) return resp;
    const err = await errorOf(resp, `${method} ${url.pathname}`);
    if (resp.status === 401 && !retriedNonce && wantsNonce(resp, err.problem)) {
      retriedNonce = true;
      continue;
    }
    if (resp.status === 401 && !retriedToken) {
      // Expired or revoked while this page was open: one fresh token, then give up.
      retriedToken = true;
      token = null;
      continue;
    }
    throw err;
  }
}

/** apiFetch() and parse the JSON answer. */
export async function api(path, init = {}) {
  const resp = await apiFetch(path, init);
  return resp.json();
}
