// The patient's access report on /me: who used their record, when, why and on what basis,
// each line verified here (leaf, inclusion proof, checkpoint signature by the pinned log key,
// growth since the checkpoint seen before) and shown from its logged event.

import { checkPage } from "./audit.js";
import { api } from "./auth.js";
import { byId, el, say } from "./dom.js";
import { cell, idCode as code, localTime, namesOf, person } from "./page.js";
import { checkHistory, loadPin, savePin, servedVkey } from "./pin.js";

// What an access-report row's event type means, said to the patient.
const ACTIONS = {
  "consent.used": "used your consent to see your data",
  "consent.refused": "was refused access to your data",
  "consent.emergency_access": "declared an emergency to see your data (break-the-glass)",
  "session.scheduled": "scheduled a call with you",
  "session.admitted": "admitted you to a call",
  "session.connected": "connected a call with you",
  "session.media_bound": "joined the call's media",
  "session.ended": "ended a call with you",
  "session.cancelled": "cancelled a call with you",
  "session.no_show": "recorded that you missed a call",
  "audit.query": "looked at your record's audit trail",
  "identity.invite_created": "invited you or a device of yours",
  "identity.enrolled": "enrolled an identity for you",
  "attestation.revoked": "revoked a credential of yours",
  "patient.erased": "erased your stored vitals",
};
// A consent is used (or refused) for one scope: registering a device is not seeing data.
const DEVICE_ACTIONS = {
  "consent.used": "used your consent to register a monitoring device for you",
  "consent.refused": "was refused registering a monitoring device for you",
};

function actionWords(row) {
  const words = row.scope === "devices" ? DEVICE_ACTIONS[row.action] : undefined;
  return words ?? ACTIONS[row.action] ?? String(row.action);
}

let patient = null;
let pin = { pinned: null, verifier: null };
let access = { pages: [], next: null };

/** Run `load`; what goes wrong is said on the report's status line. */
async function guard(load) {
  try {
    return await load();
  } catch (e) {
    say(byId("access-status"), e.message, "error");
    return undefined;
  }
}

function showPin() {
  const state = byId("pin-state");
  const { pinned, verifier } = pin;
  byId("pin-edit").open = !verifier;
  byId("pin-edit-summary").textContent = verifier ? "Change the pinned key" : "Pin a key";
  if (!pinned || !verifier) {
    state.dataset.pinned = "false";
    state.replaceChildren(
      el("strong", {}, "No log key pinned. "),
      "The lines below cannot be verified until you pin the log's key.",
    );
    return;
  }
  state.dataset.pinned = "true";
  state.replaceChildren(
    el("strong", {}, "Pinned by you: "),
    "log ",
    el("code", {}, verifier.name),
    ", key id ",
    el("code", {}, verifier.hexId),
    ".",
  );
}

byId("pin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    pin = await savePin(byId("vkey").value);
  } catch (e) {
    say(byId("access-status"), `that is not a usable log key: ${e.message}`, "error");
    byId("vkey").focus();
    return;
  }
  showPin();
  // The pin's own line says it is pinned; the status line says what it verified.
  await guard(renderAccess);
});

byId("offer").addEventListener("click", async () => {
  try {
    byId("vkey").value = await servedVkey();
    byId("vkey").focus();
    say(
      byId("access-status"),
      "Filled in the key this server says it uses: compare it, then press “Pin this key”.",
    );
  } catch (e) {
    say(byId("access-status"), `cannot read the server's key (${e.message}).`, "error");
  }
});

const MARK = { ok: "✓", fail: "✗", unchecked: "?" };
const WORD = { ok: "Verified", fail: "Fails", unchecked: "Not verified" };

const ROLE_OF = { pat: "patient", prov: "provider", dev: "device", aud: "auditor", adm: "admin" };

/**
 * What a row says, read from its event (the bytes the proof covers), not from the summary
 * fields beside it; a summary that disagrees with its event fails the row.
 */
function described(row) {
  const ev = row.event && typeof row.event === "object" ? row.event : {};
  const data = ev.data && typeof ev.data === "object" ? ev.data : {};
  const who = String(ev.actor ?? "");
  const said = {
    time: ev.time,
    who,
    role: ROLE_OF[who.split(":", 1)[0]] ?? "unknown",
    action: ev.type,
    purpose: data.purpose ?? null,
    consent: data.consent ?? null,
    break_the_glass: Boolean(data.break_glass) || ev.type === "consent.emergency_access",
    scope: data.scope ?? null,
  };
  const differs = Object.keys(said).filter((k) => k in row && (row[k] ?? null) !== said[k]);
  return { said, differs };
}

function accessRow({ row, inclusion: checked }, signature, names) {
  const { said, differs } = described(row);
  const inclusion = differs.length
    ? {
        state: "fail",
        reason: `the report's ${differs.join(", ")} ${differs.length === 1 ? "differs" : "differ"} from the logged event`,
      }
    : checked;
  row = { ...row, ...said };
  const state = inclusion.state === "fail" || signature.state === "fail"
    ? "fail"
    : inclusion.state === "ok" && signature.state === "ok"
      ? "ok"
      : "unchecked";
  const why = state === "ok"
    ? ""
    : state === "unchecked"
      ? "pin the log key"
      : inclusion.state === "fail"
        ? inclusion.reason
        : signature.reason;
  let basis = el("span", { class: "none" }, "—");
  if (row.break_the_glass) basis = el("strong", { class: "glass" }, "Emergency access (break-the-glass)");
  else if (row.consent) basis = el("span", {}, "your consent ", code(String(row.consent).slice(0, 8)));
  return el(
    "tr",
    { "data-index": row.index, "data-state": state, class: `row-${state}${row.break_the_glass ? " glass-row" : ""}` },
    cell("When", localTime(row.time)),
    // The name is the gateway's word beside the row (names are never on the ledger); the id
    // under it is what the verified event says.
    cell("Who", person(row.who, names), el("span", { class: "role" }, ` (${row.role})`)),
    cell("What", actionWords(row)),
    cell("Why", row.purpose ? String(row.purpose) : el("span", { class: "none" }, "—")),
    cell("Basis", basis),
    cell(
      "Verified",
      el(
        "span",
        { class: `verdict ${state}` },
        el("span", { "aria-hidden": "true" }, MARK[state]),
        ` ${WORD[state]}`,
      ),
      why ? el("span", { class: "why" }, ` — ${why}`) : null,
    ),
  );
}

async function verifyPage(page) {
  const checked = await checkPage({ ...page, rows: page.accesses }, pin.verifier);
  const history = pin.verifier
    ? await checkHistory(checked.checkpoint, checked.signature, pin.verifier)
    : null;
  return { ...checked, history };
}

async function renderAccess() {
  const rows = [];
  let last = null;
  const names = namesOf(...access.pages);
  for (const page of access.pages) {
    last = await verifyPage(page);
    // A history that does not extend what this browser saw fails every line of the page.
    const signature =
      last.history?.state === "fail" ? { state: "fail", reason: last.history.text } : last.signature;
    for (const r of last.rows) rows.push(accessRow(r, signature, names));
  }
  rows.reverse(); // newest first
  byId("access-table").tBodies[0].replaceChildren(...rows);
  const line = byId("access-checkpoint");
  if (last?.checkpoint) {
    const sig = {
      ok: "signature valid by your pinned key",
      fail: `signature FAILS: ${last.signature.reason}`,
      unchecked: "signature not checked (no key pinned)",
    }[last.signature.state];
    const hist = last.history ? `; ${last.history.state === "ok" ? "" : "FAILS: "}${last.history.text}` : "";
    line.textContent = `Checked against checkpoint of size ${last.checkpoint.size}: ${sig}${hist}.`;
    line.dataset.state = last.signature.state === "ok" && last.history?.state !== "fail" ? "ok" : last.signature.state;
  }
  const states = [...byId("access-table").tBodies[0].rows].map((r) => r.dataset.state);
  const bad = states.filter((s) => s === "fail").length;
  const good = states.filter((s) => s === "ok").length;
  const statusLine = byId("access-status");
  if (!states.length) say(statusLine, "Nobody else has used your record.");
  else {
    say(
      statusLine,
      `${states.length} use${states.length === 1 ? "" : "s"} of your record: ${good} verified` +
        (bad ? `, ${bad} FAILING verification` : "") +
        (states.length - good - bad ? `, ${states.length - good - bad} not verified` : "") +
        ".",
      bad ? "error" : "info",
    );
  }
  byId("access-more").hidden = !access.next;
  byId("access").dataset.shown = String(Number(byId("access").dataset.shown ?? 0) + 1);
}

async function fetchAccess(cursor) {
  const q = cursor ? `?cursor=${encodeURIComponent(cursor)}` : "";
  return api(`/v1/patients/${patient}/access-report${q}`);
}

/** Load the report from the start. */
async function showAccess() {
  const page = await fetchAccess(null);
  access = { pages: [page], next: page.next };
  await renderAccess();
}

/** Show the report of `sub` (this browser's patient) and its pin box. Resolves once shown. */
export async function showAccessReport(sub) {
  patient = sub;
  try {
    pin = await loadPin();
  } catch (e) {
    say(byId("access-status"), `the pinned key cannot be used: ${e.message}`, "error");
  }
  showPin();
  await guard(showAccess);
}

byId("access-more").addEventListener("click", () =>
  guard(async () => {
    const page = await fetchAccess(access.next);
    access.pages.push(page);
    access.next = page.next;
    await renderAccess();
  }),
);
byId("access-refresh").addEventListener("click", () => guard(showAccess));
