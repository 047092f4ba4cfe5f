// /enroll?invite=CODE (or the form): make a key pair here, redeem the invite, show who we
// are now and where to go next. /enroll?next=/me#demo=... (printed by `make demo`) keeps a
// seeded demo identity instead, then goes on to `next`.

import { ApiError, api, enroll, errorOf, forget, importDemo, loadHolder } from "./auth.js";
import { b64urlDecode, fromUtf8 } from "./codec.js";
import { byId, el, say } from "./dom.js";
import { sameOriginPath } from "./page.js";

const status = byId("status");
const form = byId("enroll-form");
const input = byId("invite");
const button = byId("enroll-button");
const nameField = byId("name-field");
const nameInput = byId("display-name");

const KEY_NAMES = { EdDSA: "Ed25519 (EdDSA)", ES256: "P-256 (ES256)" };
const HOME = { auditor: "/console", patient: "/me", provider: "/me" };

function nextLinks(role) {
  const links = [];
  if (role === "auditor") {
    links.push(["/console", "Compliance console: search and verify the audit trail"]);
  }
  links.push(["/me", "My page"]);
  return links.map(([href, text]) => el("li", {}, el("a", { href }, text)));
}

function showCurrent(holder) {
  const section = byId("current");
  if (!holder) {
    section.hidden = true;
    return;
  }
  byId("current-sub").textContent = holder.sub;
  byId("current-role").textContent = holder.role;
  byId("current-link").href = HOME[holder.role] ?? "/me";
  section.hidden = false;
}

/**
 * Whether this invite leaves it to its holder to say their name (POST /v1/enroll/check;
 * nothing is spent). A code that is unknown, used or expired is refused as enrollment
 * refuses it, and said so before anyone types a name.
 */
async function asksName(code) {
  let resp;
  try {
    resp = await fetch("/v1/enroll/check", {
      method: "POST",
      credentials: "omit",
      cache: "no-store",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ invite: code }),
    });
  } catch (e) {
    throw new ApiError(`Cannot reach the gateway (${e.message}).`);
  }
  if (!resp.ok) throw await errorOf(resp, "Checking the invite");
  const out = await resp.json();
  return Array.isArray(out.asks) && out.asks.includes("display_name");
}

function askName() {
  nameField.hidden = false;
  nameInput.required = true;
  say(status, "Enter your name as the people you deal with here should see it, then press Enroll.");
  nameInput.focus();
}

/** The fields the enrollment sends besides the code and key, or null (and why, said). */
async function fields() {
  if (nameField.hidden) {
    if (!(await asksName(input.value.trim()))) return {};
    askName();
    return null;
  }
  const name = nameInput.value.trim();
  if (!name) {
    say(status, "enter your name first.", "error");
    nameInput.focus();
    return null;
  }
  return { display_name: name };
}

async function submit() {
  button.disabled = true;
  byId("done").hidden = true;
  try {
    const extra = await fields();
    if (extra === null) return;
    say(status, "Making a key in this browser and redeeming the invite…", "busy");
    const out = await enroll(input.value, extra);
    // Prove the stored key works end to end: a token by client assertion, then a call.
    const me = await api("/v1/me");
    const holder = await loadHolder();
    const named = typeof out.display_name === "string" && out.display_name !== "";
    byId("name").textContent = named ? out.display_name : "";
    byId("name").hidden = !named;
    byId("name-label").hidden = !named;
    byId("sub").textContent = me.sub;
    byId("role").textContent = me.role;
    byId("alg").textContent = `${KEY_NAMES[holder.alg] ?? holder.alg}, kept in this browser`;
    byId("ledger").textContent =
      out.receipt?.index === undefined ? "recorded" : `entry ${out.receipt.index}`;
    byId("next").replaceChildren(...nextLinks(me.role));
    input.value = "";
    nameInput.value = "";
    nameField.hidden = true;
    showCurrent(null);
    form.hidden = true;
    byId("done").hidden = false;
    say(status, `enrolled as ${named ? `${out.display_name}, ` : ""}${me.sub} (${me.role}).`, "ok");
    byId("done").focus();
  } catch (e) {
    say(status, e.message, "error");
    const aboutName = !nameField.hidden && String(e.problem?.detail ?? "").includes("display_name");
    (aboutName ? nameInput : input).focus();
  } finally {
    button.disabled = false;
  }
}

// Another code may say who its holder is: ask again when the code changes.
input.addEventListener("input", () => {
  nameField.hidden = true;
  nameInput.required = false;
});

form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (!input.value.trim()) {
    say(status, "enter the invite code first.", "error");
    input.focus();
    return;
  }
  submit();
});

byId("forget").addEventListener("click", async () => {
  await forget();
  showCurrent(null);
  say(status, "this browser's key is deleted. Its identity stays enrolled until revoked.", "ok");
});

/**
 * The invite in this page's address, if any: `#invite=CODE` (a fragment never reaches a
 * server, proxy or log) or `?invite=CODE`. It is then removed from the address bar and
 * history: the code is single-use, but no need to leave it lying around.
 */
function takeInvite() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("invite");
  const invite = fromHash || new URLSearchParams(location.search).get("invite");
  if (invite) history.replaceState(null, "", location.pathname);
  return invite;
}

// -- demo identities (`make demo`) --------------------------------------------------------

/**
 * The demo identity in this page's address (`#demo=<base64url JSON>`) and where to go then
 * (`?next=`), or null. Both leave the address bar and history at once: the fragment holds a
 * private key.
 */
function takeDemo() {
  const demo = new URLSearchParams(location.hash.slice(1)).get("demo");
  if (!demo) return null;
  const next = new URLSearchParams(location.search).get("next");
  history.replaceState(null, "", location.pathname);
  return { demo, next };
}

function demoNotice(text, { ask = false } = {}) {
  const card = byId("demo");
  byId("demo-text").textContent = text;
  byId("demo-actions").hidden = !ask;
  card.hidden = false;
}

async function useDemo(blob, next) {
  const target = next === null ? null : sameOriginPath(next);
  say(status, "Keeping the demo identity in this browser…", "busy");
  try {
    const holder = await importDemo(blob);
    // The key must work end to end before anything else relies on it.
    const me = await api("/v1/me");
    if (me.sub !== holder.sub) throw new ApiError("The gateway knows this demo key as someone else.");
    showCurrent(holder);
    demoNotice(
      `This browser now holds the demo identity ${me.sub} (${me.role}). Its key came in ` +
        "the demo link, so anyone with that link can act as it: use it to try telegate, " +
        "never for real patients. Real users enroll from an invite, with a key made here.",
    );
    if (next !== null && target === null) {
      say(status, `the link asks to continue to “${next}”, which is not a page of this site: not followed.`, "error");
      return;
    }
    if (target !== null) {
      say(status, `demo identity ${me.sub} kept; opening ${target}…`, "ok");
      location.replace(target);
      return;
    }
    say(status, `demo identity ${me.sub} (${me.role}) kept.`, "ok");
  } catch (e) {
    say(status, e.message, "error");
  }
}

async function arriveDemo({ demo, next }, holder) {
  let blob;
  try {
    blob = JSON.parse(fromUtf8(b64urlDecode(demo)));
  } catch {
    say(status, "the demo link is damaged: copy it again from the `make demo` output.", "error");
    return;
  }
  if (holder && !holder.demo && holder.sub !== blob?.sub) {
    // A real identity is never replaced without asking.
    demoNotice(
      `This link holds a demo identity (${blob?.sub ?? "?"}). This browser already holds ` +
        `${holder.sub}; using the demo one replaces it here.`,
      { ask: true },
    );
    byId("demo-use").addEventListener("click", () => useDemo(blob, next), { once: true });
    say(status, "Press “Use the demo identity” to replace the identity this browser holds.");
    return;
  }
  await useDemo(blob, next);
}

async function arrive() {
  const demo = takeDemo();
  const invite = demo ? null : takeInvite();
  if (invite) {
    input.value = invite;
    nameField.hidden = true;
  }
  let holder = null;
  try {
    holder = await loadHolder();
  } catch (e) {
    say(status, `cannot open this browser's key store (${e.message}).`, "error");
    return;
  }
  showCurrent(holder);
  if (demo) {
    await arriveDemo(demo, holder);
    return;
  }
  if (!invite) return;
  form.hidden = false;
  if (!holder) submit();
  else say(status, "Press Enroll to replace the identity this browser holds.");
}

// An invite link opened while this page is already showing changes only the fragment.
window.addEventListener("hashchange", arrive);
arrive().finally(() => {
  document.body.dataset.ready = "true";
});
