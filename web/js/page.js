// What the signed-in pages share: who this browser is, the demo-identity banner, the
// "enroll first" card, and safe in-site links.

import { loadHolder } from "./auth.js";
import { byId, el, say } from "./dom.js";

/**
 * `next` as a path of this site ("/me", "/call/abc?x#y"), or null when it is anything
 * else: another origin, a protocol-relative "//host", a backslash trick, a scheme.
 */
export function sameOriginPath(next) {
  if (typeof next !== "string" || !next.startsWith("/") || next.startsWith("//")) return null;
  if (next.includes("\\") || /[\u0000-\u001f\u007f]/.test(next)) return null;
  let url;
  try {
    url = new URL(next, location.origin);
  } catch {
    return null;
  }
  if (url.origin !== location.origin) return null;
  return url.pathname + url.search + url.hash;
}

/** Fill the header's "signed in as" and, for a `make demo` identity, say so plainly. */
export function showIdentity(holder) {
  const who = byId("who");
  // The name said at enrollment (kept with the key), else the id alone.
  const own = new Map(typeof holder.name === "string" && holder.name ? [[holder.sub, holder.name]] : []);
  if (who) who.replaceChildren(person(holder.sub, own), ` · ${holder.role}`);
  if (!holder.demo || byId("demo-banner")) return;
  const banner = el(
    "p",
    { id: "demo-banner", class: "banner warn", role: "note" },
    el("strong", {}, "Demo identity. "),
    "This browser holds a seeded key from ",
    el("code", {}, "make demo"),
    ": try telegate with it, never use it for real patients.",
  );
  byId("main").prepend(banner);
}

/** Show the "this browser holds no identity (or the wrong one)" card with a reason. */
export function needIdentity(text) {
  byId("enrollment-text").textContent = text;
  byId("enrollment").hidden = false;
}

/**
 * This browser's identity, shown in the header; or null, with the reason shown (the
 * key store could not be opened: in `status`; no identity: the "enroll first" card).
 */
export async function signedIn(status) {
  let holder;
  try {
    holder = await loadHolder();
  } catch (e) {
    say(status, `cannot open this browser's key store (${e.message}).`, "error");
    return null;
  }
  if (!holder) {
    needIdentity("This browser holds no telegate identity. Open your invite link to enroll it.");
    return null;
  }
  showIdentity(holder);
  return holder;
}

/** "2026-12-01 18:05" in the user's local time, from seconds or an ISO string. */
export function localTime(value) {
  const d = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(d.getTime())) return "—";
  const pad = (n) => String(n).padStart(2, "0");
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}`
  );
}

/** An identifier as code, or a dash when there is none. */
export const idCode = (v) => (v ? el("code", {}, String(v)) : el("span", { class: "none" }, "—"));

/** A table cell that, on a phone, shows its column's name beside its content. */
export function cell(label, ...content) {
  return el("td", { "data-label": label }, el("div", {}, ...content));
}

/**
 * The `names` object of an answer ({id: display name}), or an empty one: a name is only
 * ever a string the gateway chose to show to this caller. Several answers merge into one.
 */
export function namesOf(...answers) {
  const out = new Map();
  for (const a of answers) {
    const names = a && typeof a.names === "object" && a.names !== null ? a.names : {};
    for (const [id, name] of Object.entries(names)) {
      if (typeof name === "string" && name) out.set(id, name);
    }
  }
  return out;
}

/**
 * A person (or device) as people read it: their name, with the id as smaller secondary
 * text; the id alone when the gateway gave no name. Names are text nodes (never HTML): a
 * name is whatever its owner typed.
 */
export function person(id, names) {
  if (!id) return el("span", { class: "none" }, "—");
  const name = names?.get(String(id));
  if (!name) return el("code", { class: "person-id" }, String(id));
  return el(
    "span",
    { class: "person", "data-id": String(id) },
    el("span", { class: "person-name" }, name),
    " ",
    el("code", { class: "person-id" }, String(id)),
  );
}

/** The same in one line of plain text, for labels and status lines: "Dr Jane Doe (prov:…)". */
export function personText(id, names) {
  const name = names?.get(String(id));
  return name ? `${name} (${id})` : String(id);
}
