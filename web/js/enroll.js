// /enroll?invite=CODE (or the form): make a key pair here, redeem the invite, show who we
// are now and where to go next.

import { api, enroll, forget, loadHolder } from "./auth.js";
import { byId, el, say } from "./dom.js";

const status = byId("status");
const form = byId("enroll-form");
const input = byId("invite");
const button = byId("enroll-button");

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

async function submit() {
  button.disabled = true;
  byId("done").hidden = true;
  say(status, "Making a key in this browser and redeeming the invite…", "busy");
  try {
    const out = await enroll(input.value);
    // Prove the stored key works end to end: a token by client assertion, then a call.
    const me = await api("/v1/me");
    const holder = await loadHolder();
    byId("sub").textContent = me.sub;
    byId("role").textContent = me.role;
    byId("alg").textContent = `${KEY_NAMES[holder.alg] ?? holder.alg}, kept in this browser`;
    byId("ledger").textContent =
      out.receipt?.index === undefined ? "recorded" : `entry ${out.receipt.index}`;
    byId("next").replaceChildren(...nextLinks(me.role));
    input.value = "";
    showCurrent(null);
    form.hidden = true;
    byId("done").hidden = false;
    say(status, `enrolled as ${me.sub} (${me.role}).`, "ok");
    byId("done").focus();
  } catch (e) {
    say(status, e.message, "error");
    input.focus();
  } finally {
    button.disabled = false;
  }
}

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

async function arrive() {
  const invite = takeInvite();
  if (invite) input.value = invite;
  let holder = null;
  try {
    holder = await loadHolder();
  } catch (e) {
    say(status, `cannot open this browser's key store (${e.message}).`, "error");
    return;
  }
  showCurrent(holder);
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
