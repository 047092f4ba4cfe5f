// /me: a patient's calls, consents, vitals and access report (every line of which is checked
// here against the pinned log key); for a provider, their calls, the patients who consented
// and the waiting room. Calls are the gateway's list of the caller's own (GET /v1/sessions).

import { showAccessReport } from "./access.js";
import { api } from "./auth.js";
import { byId, el, say } from "./dom.js";
import { cell, idCode as code, localTime, namesOf, needIdentity, person, personText, signedIn } from "./page.js";
import * as store from "./store.js";
import { Series, cards, nameOf, valueText } from "./vitals.js";

const SCOPE_WORDS = {
  call: "video calls",
  "vitals.read": "read stored vitals",
  "vitals.stream": "live vitals in calls",
  devices: "register monitoring devices for me",
};
const FINAL = new Set(["ended", "cancelled", "no_show"]);
const STATE_WORDS = {
  scheduled: "scheduled",
  waiting: "patient in the waiting room",
  admitted: "in progress",
  connected: "in progress",
  ended: "ended",
  cancelled: "cancelled",
  no_show: "missed",
};
const VITALS_PAGES = 5; // pages of up to 1000 readings: the last day of a busy monitor

const status = byId("status");
let holder = null;
const series = new Series(200);
let vitalRows = [];
// Who the people on this page are ({id: name}), as the gateway's last answers said.
let names = new Map();

// -- small helpers ---------------------------------------------------------------------

/** Run a section's loader; its errors go to that section's own status line. */
async function section(name, load) {
  try {
    await load();
  } catch (e) {
    say(byId(`${name}-status`) ?? status, e.message, "error");
  }
}

function toLocalInput(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}`
  );
}

// -- calls ------------------------------------------------------------------------------

const PAST_SHOWN = 20;

function callItem(s, known) {
  const other = holder.sub === s.patient ? s.provider : s.patient;
  const live = !FINAL.has(s.state);
  return el(
    "li",
    { class: `call state-${s.state}`, "data-session": s.id, "data-state": s.state },
    el(
      "span",
      { class: "call-who" },
      holder.role === "patient" ? "With provider " : "With patient ",
      person(other, known),
    ),
    el("span", { class: "call-state" }, STATE_WORDS[s.state] ?? s.state),
    el("span", { class: "call-time" }, `since ${localTime(s.updated)}`),
    live
      ? el("a", { class: "button", href: `/call/${s.id}` }, holder.role === "patient" ? "Join the call" : "Open the call")
      : null,
  );
}

/**
 * The caller's own calls, as the gateway lists them (GET /v1/sessions, most recently
 * changed first): every one not over yet, and the latest that are. Two questions, so that
 * many past calls never push a scheduled one out of the list.
 */
async function showCalls() {
  const [active, recent] = await Promise.all([
    api("/v1/sessions?active=true&limit=200"),
    api("/v1/sessions?limit=50"),
  ]);
  const upcoming = active.sessions;
  const known = namesOf(active, recent);
  const live = new Set(upcoming.map((s) => s.id));
  // A call that ended between the two answers is shown once, as the first answer has it.
  const past = recent.sessions.filter((s) => FINAL.has(s.state) && !live.has(s.id)).slice(0, PAST_SHOWN);
  byId("call-list").replaceChildren(...upcoming.map((s) => callItem(s, known)));
  byId("past-list").replaceChildren(...past.map((s) => callItem(s, known)));
  byId("past-calls").hidden = past.length === 0;
  const line = byId("calls-status");
  if (!upcoming.length) say(line, "No upcoming calls.");
  else say(line, `${upcoming.length} upcoming call${upcoming.length === 1 ? "" : "s"}.`);
}

byId("request-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = byId("request-provider");
  const provider = input.value.trim();
  const line = byId("calls-status");
  if (!/^prov:[0-9a-f]{32}$/.test(provider)) {
    say(line, "a provider id looks like prov: followed by 32 hex digits.", "error");
    input.focus();
    return;
  }
  await section("calls", async () => {
    await api("/v1/sessions", { method: "POST", json: { provider } });
    input.value = "";
    await showCalls();
    say(line, "call requested: join it when you are ready, the provider admits you.", "ok");
  });
});

// -- provider: patients and the waiting room ------------------------------------------------

async function schedule(patient, button, known) {
  button.disabled = true;
  await section("patients", async () => {
    const s = await api("/v1/sessions", { method: "POST", json: { patient } });
    await showCalls();
    say(byId("patients-status"), `call scheduled with ${personText(patient, known)}.`, "ok");
    byId("call-list").querySelector(`[data-session="${s.id}"] a`)?.focus();
  });
  button.disabled = false;
}

async function showPatients() {
  const answer = await api("/v1/consents");
  const { consents } = answer;
  const known = namesOf(answer);
  // One line per patient: what their active consents allow together, until the last ends.
  const byPatient = new Map();
  for (const c of consents.filter((x) => x.active)) {
    const seen = byPatient.get(c.patient) ?? { patient: c.patient, scopes: [], until: 0 };
    seen.scopes = [...new Set([...seen.scopes, ...c.scopes])].sort();
    seen.until = Math.max(seen.until, c.until);
    byPatient.set(c.patient, seen);
  }
  const rows = [...byPatient.values()].map((c) => {
    const button = el("button", { type: "button", class: "secondary" }, "Schedule a call");
    button.setAttribute("aria-label", `Schedule a call with ${personText(c.patient, known)}`);
    button.disabled = !c.scopes.includes("call");
    button.addEventListener("click", () => schedule(c.patient, button, known));
    return el(
      "tr",
      { "data-patient": c.patient },
      cell("Patient", person(c.patient, known)),
      cell("Allows", c.scopes.map((s) => SCOPE_WORDS[s] ?? s).join(", ")),
      cell("Until", localTime(c.until)),
      cell("Call", button),
    );
  });
  byId("patient-table").tBodies[0].replaceChildren(...rows);
  if (!rows.length) say(byId("patients-status"), "No patient has consented to you yet.");
  const room = await api("/v1/sessions/waiting");
  const { waiting } = room;
  const inRoom = namesOf(room);
  byId("waiting-list").replaceChildren(
    ...(waiting.length
      ? waiting.map((s) => callItem(s, inRoom))
      : [el("li", { class: "none" }, "Nobody is waiting.")]),
  );
}

// -- patient: consents ------------------------------------------------------------------------

const granteeText = (g) => (g === "role:provider" ? "every provider" : personText(g, names));

function consentStatus(c) {
  if (c.revoked) return ["revoked", `revoked ${localTime(c.revoked)}`];
  if (!c.active) return ["expired", "expired"];
  return ["active", "active"];
}

async function revoke(c, button) {
  button.disabled = true;
  await section("consents", async () => {
    await api(`/v1/consents/${encodeURIComponent(c.id)}`, { method: "DELETE" });
    await showConsents();
    say(byId("consents-status"), `consent for ${granteeText(c.grantee)} revoked; it stops at once.`, "ok");
  });
  button.disabled = false;
}

async function showConsents() {
  const answer = await api("/v1/consents");
  const { consents } = answer;
  names = namesOf(answer);
  consents.sort((a, b) => b.created - a.created);
  const rows = consents.map((c) => {
    const [state, words] = consentStatus(c);
    let action = el("span", { class: "none" }, "—");
    if (state === "active") {
      action = el("button", { type: "button", class: "secondary danger" }, "Revoke");
      action.setAttribute("aria-label", `Revoke the consent for ${granteeText(c.grantee)}`);
      action.addEventListener("click", () => revoke(c, action));
    }
    return el(
      "tr",
      { "data-consent": c.id, "data-state": state, class: `consent-${state}` },
      cell("Given to", c.grantee === "role:provider" ? "every provider" : person(c.grantee, names)),
      cell("Allows", c.scopes.map((s) => SCOPE_WORDS[s] ?? s).join(", ")),
      cell("Until", localTime(c.until)),
      cell("Status", el("strong", {}, words)),
      cell("Action", action),
    );
  });
  byId("consent-table").tBodies[0].replaceChildren(...rows);
  const line = byId("consents-status");
  if (!rows.length) say(line, "You have not given any consent.");
  else say(line, `${consents.filter((c) => c.active).length} active.`);
}

byId("grant-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const line = byId("consents-status");
  const grantee = byId("grantee").value.trim();
  const scopes = [...form.querySelectorAll('input[name="scope"]:checked')].map((i) => i.value);
  const until = new Date(byId("until").value);
  if (grantee !== "role:provider" && !/^prov:[0-9a-f]{32}$/.test(grantee)) {
    say(line, "give a provider id (prov:…) or role:provider.", "error");
    byId("grantee").focus();
    return;
  }
  if (!scopes.length) {
    say(line, "choose at least one thing to allow.", "error");
    form.querySelector('input[name="scope"]').focus();
    return;
  }
  if (Number.isNaN(until.getTime()) || until <= new Date()) {
    say(line, "the end time must be in the future.", "error");
    byId("until").focus();
    return;
  }
  byId("grant-button").disabled = true;
  await section("consents", async () => {
    const json = { grantee, scopes, until: until.toISOString().replace(/\.\d{3}Z$/, "Z") };
    await api("/v1/consents", { method: "POST", json });
    byId("grantee").value = "";
    await showConsents();
    say(line, `consent given to ${granteeText(grantee)}: ${scopes.join(", ")}.`, "ok");
  });
  byId("grant-button").disabled = false;
});

// -- patient: vitals ----------------------------------------------------------------------------

async function showVitals() {
  const since = new Date(Date.now() - 86_400_000).toISOString();
  const rows = [];
  let after = null;
  for (let page = 0; page < VITALS_PAGES; page++) {
    const q = new URLSearchParams({ since, limit: "1000" });
    if (after) q.set("after", after);
    const out = await api(`/v1/patients/${holder.sub}/vitals?${q}`);
    rows.push(...out.readings);
    after = out.next;
    if (!after) break;
  }
  series.byCode.clear();
  series.add(rows);
  vitalRows = rows.slice(-200).reverse();
  byId("vital-cards").replaceChildren(...cards(series, localTime));
  byId("vital-table").tBodies[0].replaceChildren(
    ...vitalRows.map((r) =>
      el(
        "tr",
        {},
        cell("Time", localTime(r.time)),
        cell("Measurement", nameOf(r.code)),
        cell("Value", valueText(r)),
        cell("Device", code(r.device)),
      ),
    ),
  );
  const line = byId("vitals-status");
  if (!rows.length) say(line, "No readings in the last day.");
  else say(line, `${rows.length} reading${rows.length === 1 ? "" : "s"} in the last day${after ? " (the latest shown)" : ""}.`);
}

byId("vitals-refresh").addEventListener("click", () => section("vitals", showVitals));

// -- start ------------------------------------------------------------------------------------------

async function startPatient() {
  byId("title").textContent = "My page";
  byId("calls-help").textContent =
    "Calls with your providers. Join a call when it is time: the provider admits you from the waiting room.";
  for (const id of ["calls", "consents", "vitals", "access"]) byId(id).hidden = false;
  byId("request-form").hidden = false;
  const until = new Date(Date.now() + 30 * 86_400_000);
  byId("until").value = toLocalInput(until);
  await Promise.all([
    section("calls", showCalls),
    section("consents", showConsents),
    section("vitals", showVitals),
    showAccessReport(holder.sub),
  ]);
}

async function startProvider() {
  byId("title").textContent = "My patients";
  byId("calls-help").textContent =
    "Calls you scheduled and calls patients asked you for. Open one to see your waiting " +
    "room there and admit the patient.";
  byId("calls").hidden = false;
  byId("patients").hidden = false;
  await Promise.all([section("patients", showPatients), section("calls", showCalls)]);
}

async function start() {
  holder = await signedIn(status);
  if (!holder) return;
  // Earlier versions of this page kept the ids of calls made here; the gateway lists them now.
  store.remove(store.SETTINGS, `calls:${holder.sub}`).catch(() => {});
  if (holder.role === "patient") await startPatient();
  else if (holder.role === "provider") await startProvider();
  else {
    needIdentity(
      `This page is for patients and providers; this browser holds ${holder.sub} (${holder.role}).`,
    );
    if (holder.role === "auditor") {
      byId("enrollment").append(el("p", {}, el("a", { href: "/console" }, "Open the compliance console")));
    }
  }
}

start().finally(() => {
  document.body.dataset.ready = "true";
});
