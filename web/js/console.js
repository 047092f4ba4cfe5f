// /console: search the audit trail and verify every row in this browser against the log
// key the user pinned. See audit.js for what "verified" means.

import { checkPage, rootText } from "./audit.js";
import { ApiError, apiFetch, loadHolder } from "./auth.js";
import { byId, el, say } from "./dom.js";
import { parseVkey } from "./note.js";
import { namesOf, person, showIdentity } from "./page.js";
import { PINNED, checkHistory } from "./pin.js";
import * as store from "./store.js";

// ledger/events.py EventType: offered as suggestions; any other value may be typed.
const EVENT_TYPES = [
  "gateway.started",
  "gateway.stopped",
  "identity.enrolled",
  "identity.invite_created",
  "attestation.issued",
  "attestation.revoked",
  "consent.granted",
  "consent.revoked",
  "consent.used",
  "consent.refused",
  "consent.emergency_access",
  "session.scheduled",
  "session.waiting",
  "session.admitted",
  "session.connected",
  "session.media_bound",
  "session.ended",
  "session.cancelled",
  "session.no_show",
  "session.socket_closed",
  "vitals.batch",
  "patient.erased",
  "audit.query",
  "auth.refused",
];
const FILTERS = ["type", "actor", "subject", "session"];

const status = byId("status");
const searchForm = byId("search");
const pinForm = byId("pin-form");
const vkeyInput = byId("vkey");

let verifier = null; // the parsed pinned key, or null
let pinned = null; // {vkey, pinnedAt}
let query = null; // {params, cursors: [cursor of each page shown], page}
let current = null; // the page last fetched, kept to re-verify when the pin changes
let busy = false;
let renders = 0; // pages shown so far (tests wait on it)

// -- the pinned key ---------------------------------------------------------------------

function showPin() {
  const state = byId("pin-state");
  byId("unpin").hidden = !pinned;
  // Once a key is pinned its form folds away (a phone has little room); one press opens it.
  byId("pin-edit").open = !verifier;
  byId("pin-edit-summary").textContent = verifier ? "Change the pinned key" : "Pin a key";
  if (!pinned || !verifier) {
    state.dataset.pinned = "false";
    state.replaceChildren(
      el("strong", {}, "No log key pinned. "),
      "Rows cannot be verified until you pin the key of the log you audit.",
    );
    return;
  }
  state.dataset.pinned = "true";
  const when = new Date(pinned.pinnedAt).toLocaleString();
  state.replaceChildren(
    el("strong", {}, "Pinned by you"),
    ` on ${when}: log `,
    el("code", {}, verifier.name),
    ", key id ",
    el("code", {}, verifier.hexId),
    ". Checkpoints are verified with this key only.",
    el("br"),
    el("code", { class: "vkey" }, verifier.vkey),
  );
}

async function loadPin() {
  pinned = (await store.get(store.SETTINGS, PINNED)) ?? null;
  verifier = null;
  if (pinned) {
    try {
      verifier = await parseVkey(pinned.vkey);
      vkeyInput.value = pinned.vkey;
    } catch (e) {
      say(status, `the pinned key cannot be used: ${e.message}`, "error");
    }
  }
  showPin();
}

pinForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  await ready; // the stored pin is read first, so it cannot overwrite this one
  let parsed;
  try {
    parsed = await parseVkey(vkeyInput.value);
  } catch (e) {
    say(status, `that is not a usable log key: ${e.message}`, "error");
    vkeyInput.focus();
    return;
  }
  pinned = { vkey: parsed.vkey, pinnedAt: new Date().toISOString() };
  await store.put(store.SETTINGS, PINNED, pinned);
  verifier = parsed;
  showPin();
  if (current) await render(current);
  say(status, `pinned the key of ${parsed.name} (key id ${parsed.hexId}).`, "ok");
});

byId("unpin").addEventListener("click", async () => {
  await ready;
  await store.remove(store.SETTINGS, PINNED);
  pinned = null;
  verifier = null;
  vkeyInput.value = "";
  showPin();
  if (current) await render(current);
  say(status, "the log key is unpinned.", "ok");
});

byId("offer").addEventListener("click", async () => {
  try {
    const resp = await fetch("/ledger/vkey", { cache: "no-store" });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    vkeyInput.value = (await resp.text()).trim();
    vkeyInput.focus();
    say(
      status,
      "Filled in the key this server says it uses. It is not pinned until you press " +
        "“Pin this key”: compare it with the key published by the log's operator first.",
    );
  } catch (e) {
    say(status, `cannot read the server's key (${e.message}).`, "error");
  }
});

// -- searching --------------------------------------------------------------------------

function filterParams() {
  const form = new FormData(searchForm);
  const params = new URLSearchParams();
  for (const name of FILTERS) {
    const v = String(form.get(name) ?? "").trim();
    if (v) params.set(name, v);
  }
  for (const name of ["since", "until"]) {
    const v = String(form.get(name) ?? "");
    if (!v) continue;
    const t = new Date(v); // datetime-local: the user's local time
    if (Number.isNaN(t.getTime())) throw new ApiError(`“${name}” is not a valid time.`);
    params.set(name, t.toISOString());
  }
  return params;
}

function pageSize() {
  const n = Number(byId("f-limit").value || 50);
  if (!Number.isInteger(n) || n < 1 || n > 1000) {
    throw new ApiError("rows per page must be a whole number from 1 to 1000.");
  }
  return n;
}

async function fetchPage() {
  const params = new URLSearchParams(query.params);
  params.set("limit", String(query.limit));
  const cursor = query.cursors[query.page];
  if (cursor !== null) params.set("cursor", cursor);
  const resp = await apiFetch(`/v1/audit/events?${params}`);
  return resp.json();
}

async function show(step) {
  if (busy) return;
  busy = true;
  byId("search-button").disabled = true;
  say(status, "Searching and verifying…", "busy");
  try {
    if (step === 0) {
      query = { params: filterParams(), limit: pageSize(), cursors: [null], page: 0 };
    } else {
      query.page += step;
    }
    const page = await fetchPage();
    query.cursors[query.page + 1] = page.next ?? null;
    current = page;
    await render(page);
  } catch (e) {
    if (step !== 0 && query) query.page -= step;
    say(status, e.message, "error");
  } finally {
    busy = false;
    byId("search-button").disabled = false;
  }
}

searchForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  await ready;
  show(0);
});
byId("next").addEventListener("click", () => show(1));
byId("prev").addEventListener("click", () => show(-1));

// -- showing a verified page ------------------------------------------------------------

const MARK = { ok: "✓", fail: "✗", unchecked: "?" };
const CHECK_WORD = { ok: "valid", fail: "FAILS", unchecked: "not checked" };
const ROW_WORD = { ok: "Verified", fail: "Verification fails", unchecked: "Not verified" };

/** A state in words and a mark; the colour only repeats what the words say. */
function verdict(state, text) {
  const mark = el("span", { "aria-hidden": "true" }, MARK[state]);
  return el("span", { class: `verdict ${state}` }, mark, ` ${text}`);
}

function check(label, state, reason) {
  const why = state === "ok" ? "" : ` — ${reason}`;
  return el("li", { class: state }, `${label}: `, el("strong", {}, CHECK_WORD[state]), why);
}

function cell(label, ...content) {
  // One wrapper, so that on a phone (where the label sits beside it) content stays together.
  return el("td", { role: "cell", "data-label": label }, el("div", {}, ...content));
}

function rowState({ inclusion, ok }, signature) {
  if (ok) return "ok";
  return inclusion.state === "fail" || signature.state === "fail" ? "fail" : "unchecked";
}

function rowElement(result, signature, names) {
  const { row, inclusion } = result;
  const ev = row.event && typeof row.event === "object" ? row.event : {};
  const state = rowState(result, signature);
  const id = (v) => (v ? el("code", {}, String(v)) : el("span", { class: "none" }, "—"));
  return el(
    "tr",
    { role: "row", class: `row-${state}`, "data-index": row.index, "data-state": state },
    cell("Entry", String(row.index)),
    cell("Time (UTC)", String(ev.time ?? "").replace("T", " ").replace("Z", "")),
    cell(
      "Type",
      el(
        "details",
        {},
        el("summary", {}, String(ev.type ?? "?")),
        el("pre", { class: "event" }, JSON.stringify(ev, null, 2)),
      ),
    ),
    // Names are the gateway's word beside the page (never on the ledger); the ids under
    // them are what the verified event says.
    cell("Actor", person(ev.actor, names)),
    cell("Subject", person(ev.subject, names)),
    cell("Session", id(ev.session)),
    cell(
      "Verification",
      verdict(state, ROW_WORD[state]),
      el(
        "ul",
        { class: "checks" },
        check("Inclusion proof", inclusion.state, inclusion.reason),
        check("Checkpoint signature", signature.state, signature.reason),
      ),
    ),
  );
}

function checkpointBox(checkpoint, signature, history) {
  const body = checkpoint
    ? [
        el("code", {}, checkpoint.origin),
        ` · size ${checkpoint.size} · root `,
        el("code", { class: "root" }, rootText(checkpoint)),
      ]
    : "unreadable";
  const detail = signature.detail ? `; ${signature.detail}` : "";
  const said = {
    ok: `valid, by your pinned key (${verifier?.hexId})`,
    fail: `FAILS — ${signature.reason}${detail}`,
    unchecked: "not checked — pin the log key above",
  }[signature.state];
  const lines = [
    el("p", {}, el("strong", {}, "Checkpoint: "), body),
    el("p", {}, el("strong", {}, "Signature: "), verdict(signature.state, said)),
  ];
  if (history) {
    const text = history.state === "ok" ? history.text : `FAILS — ${history.text}`;
    lines.push(el("p", {}, el("strong", {}, "History: "), verdict(history.state, text)));
  }
  const box = byId("checkpoint");
  box.replaceChildren(...lines);
  if (signature.state === "unchecked") box.dataset.state = "unchecked";
  else box.dataset.state = signature.state === "ok" && history?.state !== "fail" ? "ok" : "fail";
}

function summarize(states) {
  const n = states.length;
  if (n === 0) return ["No events match on this page.", "ok"];
  const good = states.filter((s) => s === "ok").length;
  const bad = states.filter((s) => s === "fail").length;
  const unchecked = n - good - bad;
  let text = `${n} row${n === 1 ? "" : "s"} on page ${query.page + 1}: `;
  text += `${good} verified, ${bad} failing`;
  if (unchecked) text += `, ${unchecked} not verified (no pinned key)`;
  return [`${text}.`, bad ? "fail" : unchecked ? "unchecked" : "ok"];
}

async function render(page) {
  const { checkpoint, signature, rows } = await checkPage(page, verifier);
  checkpointBox(checkpoint, signature, await checkHistory(checkpoint, signature, verifier));
  const names = namesOf(page);
  byId("rows").tBodies[0].replaceChildren(...rows.map((r) => rowElement(r, signature, names)));
  const [text, state] = summarize(rows.map((r) => rowState(r, signature)));
  // The summary is its own live region, next to the table it describes.
  byId("summary").textContent = text;
  byId("summary").dataset.state = state;
  say(status, "");
  byId("page-no").textContent = `Page ${query.page + 1}`;
  byId("prev").disabled = query.page === 0;
  byId("next").disabled = !query.cursors[query.page + 1];
  byId("results").hidden = false;
  byId("results").dataset.shown = String(++renders);
}

// -- exports ----------------------------------------------------------------------------

const EXPORTS = {
  csv: ["csv", "CSV"],
  fhir: ["fhir.json", "FHIR Bundle"],
  jsonl: ["jsonl", "JSON Lines"],
};

async function download(format, button) {
  const [ext, label] = EXPORTS[format];
  button.disabled = true;
  say(status, `Exporting ${label}…`, "busy");
  try {
    const params = filterParams();
    params.set("format", format);
    const resp = await apiFetch(`/v1/audit/export?${params}`);
    const blob = await resp.blob();
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: `telegate-audit-${stamp}.${ext}`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    const size = resp.headers.get("Telegate-Checkpoint-Size");
    say(
      status,
      `${label} export of ${blob.size} bytes saved` + (size ? ` (log size ${size}).` : "."),
      "ok",
    );
  } catch (e) {
    say(status, e.message, "error");
  } finally {
    button.disabled = false;
  }
}

for (const button of document.querySelectorAll("[data-export]")) {
  button.addEventListener("click", () => download(button.dataset.export, button));
}

// -- start ------------------------------------------------------------------------------

function disableSearch(reason) {
  for (const c of document.querySelectorAll("#search button, [data-export]")) c.disabled = true;
  byId("enrollment-text").textContent = reason;
  byId("enrollment").hidden = false;
}

async function start() {
  byId("event-types").replaceChildren(...EVENT_TYPES.map((t) => el("option", { value: t })));
  try {
    await loadPin();
    const holder = await loadHolder();
    if (!holder) {
      disableSearch("This browser holds no telegate identity. Enroll it with your auditor invite.");
      return;
    }
    showIdentity(holder);
    if (holder.role !== "auditor") {
      disableSearch(
        `The console needs an auditor identity; this browser holds ${holder.sub} (${holder.role}).`,
      );
    }
  } catch (e) {
    say(status, `cannot open this browser's key store (${e.message}).`, "error");
  } finally {
    document.body.dataset.ready = "true";
  }
}

const ready = start();
