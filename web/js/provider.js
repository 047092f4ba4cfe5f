// The provider's side panels of /call: the waiting room (with Admit) and the patient's live
// vitals. call.js feeds them what the signalling socket says.

import { api } from "./auth.js";
import { byId, el, say } from "./dom.js";
import { localTime, namesOf, person, personText } from "./page.js";
import { Series, cards } from "./vitals.js";

/** The provider's waiting room: GET /v1/sessions/waiting, shown with an Admit button each. */
export class WaitingRoom {
  /** `sid`: this page's call; `inCall()`: whether that call is admitted or connected now. */
  constructor(sid, inCall) {
    this.sid = sid;
    this.inCall = inCall;
    this.timer = null;
    this.closed = false;
  }

  /** Show it and keep it fresh: the socket tells when this call's patient arrives, other
   * calls' patients only show up by asking. */
  start(everyMs = 5000) {
    byId("queue").hidden = false;
    this.refresh();
    this.timer = setInterval(() => this.refresh(), everyMs);
  }

  stop() {
    this.closed = true;
    clearInterval(this.timer);
  }

  async refresh() {
    if (this.closed) return;
    let waiting;
    let names;
    try {
      const room = await api("/v1/sessions/waiting");
      ({ waiting } = room);
      names = namesOf(room);
    } catch (e) {
      say(byId("queue-status"), e.message, "error");
      return;
    }
    const items = waiting.map((s) => this.item(s, names));
    byId("queue-list").replaceChildren(
      ...(items.length ? items : [el("li", { class: "none" }, "Nobody is waiting.")]),
    );
    byId("queue").dataset.count = String(waiting.length);
    // In a call, an empty waiting room only takes the place of the patient's vitals.
    byId("queue").hidden = this.inCall() && waiting.length === 0;
  }

  item(s, names) {
    const here = s.id === this.sid;
    const who = personText(s.patient, names);
    const button = el("button", { type: "button" }, here ? "Admit" : "Admit and open");
    button.setAttribute("aria-label", `Admit ${who}${here ? "" : " (another call)"}`);
    button.addEventListener("click", () => this.admit(s, button, who));
    const which = here ? "this call" : "another call";
    return el(
      "li",
      { "data-session": s.id, class: here ? "this-call" : "" },
      el("span", { class: "queue-who" }, person(s.patient, names)),
      el("span", { class: "queue-when" }, `${which} · since ${localTime(s.updated)}`),
      button,
    );
  }

  async admit(s, button, who) {
    button.disabled = true;
    try {
      await api(`/v1/sessions/${encodeURIComponent(s.id)}/admit`, { method: "POST" });
      if (s.id !== this.sid) {
        location.assign(`/call/${encodeURIComponent(s.id)}`);
        return;
      }
      say(byId("queue-status"), `admitted ${who}.`, "ok");
    } catch (e) {
      say(byId("queue-status"), e.message, "error");
    }
    button.disabled = false;
    await this.refresh();
  }
}

/** The patient's live vitals: `vitals` messages as cards; `vitals_stopped` freezes them. */
export class VitalsPanel {
  constructor(patient) {
    this.patient = patient;
    this.series = new Series(60);
    this.stopped = false;
    this.closed = false;
  }

  show() {
    byId("vitals-panel").hidden = false;
  }

  /** A `vitals` message: readings of this call's patient. */
  add(msg) {
    if (this.closed || msg.patient !== this.patient) return;
    const panel = byId("vitals-panel");
    this.series.add(Array.isArray(msg.readings) ? msg.readings : []);
    byId("vitals-live").replaceChildren(...cards(this.series, localTime));
    if (this.stopped) {
      this.stopped = false;
      this.say("The live stream resumed: the patient's consent allows it again.");
    } else if (panel.dataset.state !== "live") {
      this.say("Live from the patient's devices, with the patient's consent.");
    }
    panel.dataset.state = "live";
    panel.dataset.count = String(this.series.count);
  }

  /** `vitals_stopped`: the gateway no longer sends them (consent withdrawn). */
  stop() {
    this.stopped = true;
    byId("vitals-panel").dataset.state = "stopped";
    this.say(
      "The live stream stopped: the patient withdrew consent. The values below are the last " +
        "received and no longer update.",
    );
  }

  callOver() {
    this.closed = true;
    if (!this.stopped && this.series.count) {
      this.say("The call is over: these are the last values received.");
    }
  }

  say(text) {
    byId("vitals-state").textContent = text;
  }
}
