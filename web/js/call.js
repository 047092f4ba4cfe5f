// /call/{session}: the video call for its patient and its provider.
//
// Signalling goes over the gateway's WebSocket (a single-use ticket per socket). Offers:
//  - the patient offers when admitted; whoever (re)joins a call already admitted offers;
//  - an offer without `restart` starts a fresh peer connection on the receiving side, one
//    with `restart: true` is an ICE restart of the current one (sent after the socket came
//    back from a drop, or when media failed);
//  - both offering at once is settled as in "perfect negotiation" (W3C WebRTC 1.0, 4.7.2):
//    the patient is polite (yields), the provider is not.
// The provider also sees the waiting room and the patient's live vitals.

import { ApiError, api } from "./auth.js";
import { byId, say } from "./dom.js";
import { namesOf, needIdentity, person, signedIn } from "./page.js";
import { VitalsPanel, WaitingRoom } from "./provider.js";

const sid = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() ?? "");
const LIVE = new Set(["admitted", "connected"]);
const FINAL = new Set(["ended", "cancelled", "no_show"]);
const STATE_WORDS = {
  scheduled: "scheduled",
  waiting: "patient waiting",
  admitted: "admitted",
  connected: "connected",
  ended: "ended",
  cancelled: "cancelled",
  no_show: "missed",
};
const NOT_CONNECTED = "the other party is not connected";
// Why the gateway ended a call (the `reason` of its `bye`; web/README.md).
const ENDED_BECAUSE = {
  revoked: "an identity or access token in it was revoked",
  consent: "the patient withdrew consent to this call",
  consent_expired: "the consent to this call ran out",
  emergency_ended: "the emergency access ended",
};
// Diagnostic: /call/{session}?relay=1 sends media only through the TURN relay
// (iceTransportPolicy "relay"), to check a TURN server, or a network that needs one.
const RELAY_ONLY = new URLSearchParams(location.search).get("relay") === "1";
const CANDIDATE_WORDS = { host: "direct", srflx: "public address", prflx: "public address", relay: "relay" };

const status = byId("status");
const remoteVideo = byId("remote-video");
const localVideo = byId("local-video");

let holder = null;
let session = null;
let party = null; // "patient" | "provider"
let callState = null;
let ended = false;
let leaving = false;

let ws = null;
let everConnected = false; // a socket has been open before: the next hello is a reconnect
let retryMs = 500;
let inbox = Promise.resolve(); // messages are handled one after the other

let localStream = null;
let media = null; // resolves once the camera and microphone are (or are not) available
let ice = null; // {servers, until}
let pc = null;
let makingOffer = false;
let ignoreOffer = false;
let pending = []; // candidates that came before their description
let mediaState = ""; // the connection's state, as last shown
let repairs = 0; // fresh offers made to recover from a failure

let room = null; // the provider's waiting room
let vitals = null; // the provider's vitals panel

/** Read-only diagnostics for people debugging a call (and for the browser tests). */
const debug = {
  get party() {
    return party;
  },
  get state() {
    return callState;
  },
  get socket() {
    return ws ? ["connecting", "open", "closing", "closed"][ws.readyState] : "closed";
  },
  get pcState() {
    return pc?.connectionState ?? "none";
  },
  get vitals() {
    return vitals?.series.count ?? 0;
  },
  get vitalsStopped() {
    return vitals?.stopped ?? false;
  },
  /** Media through the TURN relay only (the `?relay=1` diagnostic). */
  relayOnly: RELAY_ONLY,
  /** The selected candidate pair (getStats): {local, remote, protocol, relayProtocol}. */
  route: null,
  offers: 0,
  restarts: 0,
  /** ICE restarts (either side) that set fresh TURN credentials on the connection first. */
  iceRefreshes: 0,
  sockets: 0,
  /** Inbound video frames decoded by the current connection (getStats, once a second). */
  framesDecoded: 0,
};
window.__telegate = debug;

// -- what the page shows -----------------------------------------------------------------------

function setCallState(state) {
  callState = state;
  byId("call-state").textContent = STATE_WORDS[state] ?? state;
  document.body.dataset.callState = state;
  const before = state === "scheduled" || state === "waiting";
  byId("waiting-room").hidden = !(party === "patient" && before && !ended);
  if (party === "patient" && before) {
    say(status, "You are in the waiting room: the provider will admit you.");
  } else if (party === "provider" && state === "scheduled") {
    say(status, "The patient has not joined yet. They appear in the waiting room when they do.");
  } else if (party === "provider" && state === "waiting") {
    say(status, "The patient is in the waiting room: admit them when you are ready.");
  }
}

function setSignal(text) {
  byId("signal-state").textContent = text;
}

function setMedia(text) {
  mediaState = text;
  byId("media-state").textContent = text;
  document.body.dataset.media = text;
}

/** The candidate pair ICE selected, from a getStats() report: {local, remote, protocol,
 * relayProtocol}, the candidate types being "host", "srflx", "prflx" or "relay". */
function selectedRoute(report) {
  let pair = null;
  report.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
  });
  if (!pair) {
    report.forEach((s) => {
      if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair ??= s;
    });
  }
  const local = pair && report.get(pair.localCandidateId);
  const remote = pair && report.get(pair.remoteCandidateId);
  if (!local || !remote) return null;
  return {
    local: local.candidateType,
    remote: remote.candidateType,
    protocol: local.protocol,
    relayProtocol: local.relayProtocol ?? null,
  };
}

function routeText(route) {
  if (!route) return RELAY_ONLY ? "TURN relay only (diagnostic)" : "—";
  const words = (t) => CANDIDATE_WORDS[t] ?? t;
  const via = route.local === "relay" || route.remote === "relay" ? "through a TURN relay" : "no relay";
  const over = route.relayProtocol ? ` over ${route.relayProtocol}` : "";
  return `${via} (this side: ${words(route.local)}${over}; other side: ${words(route.remote)})`;
}

/** Once a second: what arrives and by which route (getStats), said in the details. */
async function readStats() {
  const p = pc;
  if (!p || p.connectionState !== "connected") return;
  const report = await p.getStats();
  if (p !== pc) return;
  let video = null;
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") video = s;
  });
  debug.route = selectedRoute(report);
  byId("route").textContent = routeText(debug.route);
  if (!video) return;
  debug.framesDecoded = video.framesDecoded ?? 0;
  const size = video.frameWidth ? `${video.frameWidth}×${video.frameHeight}` : "no picture";
  const fps = video.framesPerSecond ? ` at ${Math.round(video.framesPerSecond)} fps` : "";
  byId("media-state").textContent = `${mediaState} · receiving ${size}${fps}`;
}
setInterval(() => readStats().catch(() => {}), 1000);

function finish(text) {
  if (ended) return;
  ended = true;
  room?.stop();
  closePc();
  for (const t of localStream?.getTracks() ?? []) t.stop();
  localVideo.srcObject = null;
  const sock = ws;
  ws = null;
  sock?.close(1000, "call over");
  setSignal("closed");
  byId("waiting-room").hidden = true;
  byId("end").disabled = true;
  byId("ended").hidden = false;
  say(status, text, "ok");
  vitals?.callOver();
}

// -- media ---------------------------------------------------------------------------------------

async function startMedia() {
  try {
    localStream = await navigator.mediaDevices.getUserMedia({
      audio: true,
      video: { width: { ideal: 640 }, height: { ideal: 360 } },
    });
    localVideo.srcObject = localStream;
  } catch (e) {
    localStream = null;
    byId("local-placeholder").hidden = false;
    byId("local-placeholder").textContent = "No camera or microphone";
    byId("mute").disabled = true;
    byId("camera").disabled = true;
    say(
      status,
      `no camera or microphone (${e.message}): you can still see and hear the other side.`,
      "error",
    );
  }
}

function toggle(kind, button, on, off) {
  const tracks = kind === "audio" ? localStream?.getAudioTracks() : localStream?.getVideoTracks();
  if (!tracks?.length) return;
  const enabled = !tracks[0].enabled;
  for (const t of tracks) t.enabled = enabled;
  button.setAttribute("aria-pressed", String(!enabled));
  button.textContent = enabled ? on : off;
  if (kind === "video") byId("local-placeholder").hidden = enabled;
}

byId("mute").addEventListener("click", (e) =>
  toggle("audio", e.currentTarget, "Mute microphone", "Unmute microphone"),
);
byId("camera").addEventListener("click", (e) =>
  toggle("video", e.currentTarget, "Turn camera off", "Turn camera on"),
);
byId("sound").addEventListener("click", () => {
  remoteVideo.muted = false;
  remoteVideo.play().catch(() => {});
  byId("sound").hidden = true;
});

async function showRemote(stream) {
  if (remoteVideo.srcObject !== stream) remoteVideo.srcObject = stream;
  byId("remote-placeholder").hidden = true;
  try {
    await remoteVideo.play();
  } catch (e) {
    if (e.name !== "NotAllowedError") return;
    // The browser wants a gesture before sound: play muted and offer a button.
    remoteVideo.muted = true;
    byId("sound").hidden = false;
    remoteVideo.play().catch(() => {});
  }
}

// -- the peer connection ------------------------------------------------------------------------

async function iceServers() {
  if (ice && Date.now() < ice.until) return ice.servers;
  try {
    const t = await api("/v1/turn-credentials");
    const servers = t.uris.length
      ? [{ urls: t.uris, username: t.username, credential: t.password }]
      : [];
    // Renew well before coturn stops accepting the credential.
    ice = { servers, until: Date.now() + (t.ttl * 1000) / 2 };
  } catch (e) {
    // Without TURN a direct path may still work; say so, do not give up.
    say(status, `no relay credentials (${e.message}); trying a direct connection.`, "error");
    ice = { servers: [], until: Date.now() + 60_000 };
  }
  return ice.servers;
}

/** Before an ICE restart: the relay credential the connection was made with ends with the
 * attestation it was asked with (it cannot be revoked), so a restart gathers with a fresh one. */
async function refreshIce(p) {
  const servers = await iceServers();
  if (p !== pc) return;
  p.setConfiguration({ ...p.getConfiguration(), iceServers: servers });
  debug.iceRefreshes += 1;
}

function closePc() {
  if (!pc) return;
  const old = pc;
  pc = null;
  old.onicecandidate = old.ontrack = old.onconnectionstatechange = null;
  old.close();
}

async function newPc() {
  await media;
  const servers = await iceServers();
  closePc();
  pending = [];
  debug.framesDecoded = 0;
  debug.route = null;
  if (RELAY_ONLY && !servers.length) {
    say(status, "relay only was asked for (?relay=1), but the gateway gave no TURN server.", "error");
  }
  const p = new RTCPeerConnection({
    iceServers: servers,
    iceTransportPolicy: RELAY_ONLY ? "relay" : "all",
  });
  pc = p;
  for (const track of localStream?.getTracks() ?? []) p.addTrack(track, localStream);
  p.onicecandidate = ({ candidate }) => {
    if (!candidate || p !== pc) return;
    const { candidate: line, sdpMid, sdpMLineIndex } = candidate;
    send({ type: "candidate", candidate: line, sdpMid, sdpMLineIndex });
  };
  p.ontrack = ({ track, streams }) => {
    if (p !== pc) return;
    showRemote(streams[0] ?? new MediaStream([track]));
  };
  p.onconnectionstatechange = () => {
    if (p !== pc) return;
    const state = p.connectionState;
    setMedia(state);
    if (state === "connected") {
      repairs = 0;
      // The gateway moves the call to connected when the answer passes; it says so to nobody.
      if (callState === "admitted") setCallState("connected");
      say(status, "Connected.");
    } else if (state === "failed" && !ended) {
      // ICE and DTLS gave up: start again with a fresh connection (a few times at most).
      say(status, "The media connection failed: trying again…", "error");
      if (repairs++ < 3) enqueue(() => offer(false));
    } else if (state === "disconnected") {
      say(status, "The media connection is interrupted: waiting for it to recover…", "busy");
    }
  };
  setMedia("connecting");
  return p;
}

/** Send an offer: a fresh connection, or an ICE restart of the current one. */
async function offer(restart) {
  if (ended) return;
  if (!restart || !pc?.remoteDescription) {
    restart = false;
    await newPc();
    if (!localStream) {
      pc.addTransceiver("audio", { direction: "recvonly" });
      pc.addTransceiver("video", { direction: "recvonly" });
    }
  }
  const p = pc;
  try {
    makingOffer = true;
    if (restart) {
      await refreshIce(p);
      if (p !== pc) return;
      p.restartIce();
    }
    await p.setLocalDescription();
    if (p !== pc) return;
    if (send({ type: "offer", sdp: p.localDescription.sdp, restart })) {
      if (restart) debug.restarts += 1;
      else debug.offers += 1;
    }
  } finally {
    makingOffer = false;
  }
}

async function onOffer(msg) {
  const fresh = !msg.restart || !pc;
  const collision = makingOffer || (pc !== null && pc.signalingState !== "stable");
  // Both offered: the provider keeps its own offer, the patient takes the provider's.
  ignoreOffer = collision && party === "provider";
  if (ignoreOffer) return;
  if (fresh) await newPc();
  else await refreshIce(pc);
  const p = pc;
  try {
    // As the polite side, a pending offer of ours is rolled back by this (implicitly).
    await p.setRemoteDescription({ type: "offer", sdp: msg.sdp });
    await flush(p);
    await p.setLocalDescription();
    send({ type: "answer", sdp: p.localDescription.sdp });
  } catch (e) {
    // An offer that cannot apply to this connection (say, a restart for one we no longer
    // have): start afresh rather than stay silent.
    say(status, `could not take the other side's offer (${e.message}); starting again.`, "error");
    if (repairs++ < 3) await offer(false);
  }
}

async function onAnswer(msg) {
  const p = pc;
  if (!p || p.signalingState !== "have-local-offer") return; // stale: for an offer we dropped
  await p.setRemoteDescription({ type: "answer", sdp: msg.sdp });
  await flush(p);
}

async function onCandidate(msg) {
  const c = { candidate: msg.candidate, sdpMid: msg.sdpMid, sdpMLineIndex: msg.sdpMLineIndex };
  if (!pc?.remoteDescription) {
    pending.push(c);
    return;
  }
  await addCandidate(pc, c);
}

async function addCandidate(p, c) {
  try {
    await p.addIceCandidate(c);
  } catch {
    // A candidate of a connection either side has since replaced: harmless.
  }
}

async function flush(p) {
  const queued = pending;
  pending = [];
  for (const c of queued) await addCandidate(p, c);
}

// -- signalling -----------------------------------------------------------------------------------

function send(msg) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  ws.send(JSON.stringify(msg));
  return true;
}

function enqueue(job) {
  inbox = inbox.then(job).catch((e) => say(status, e.message, "error"));
  return inbox;
}

async function onHello(msg) {
  const reconnect = everConnected;
  everConnected = true;
  party = msg.party;
  setCallState(msg.state);
  if (FINAL.has(msg.state)) {
    finish("This call is over.");
    return;
  }
  if (!LIVE.has(msg.state)) return;
  // Joining a call already admitted, or back after a drop: this side offers. After a drop
  // the connection may be fine or not: an ICE restart settles it either way.
  if (reconnect && pc?.remoteDescription) await offer(true);
  else await offer(false);
}

async function onMessage(msg) {
  switch (msg.type) {
    case "hello":
      return onHello(msg);
    case "waiting":
      setCallState("waiting");
      return room?.refresh();
    case "admitted":
      setCallState("admitted");
      byId("waiting-room").hidden = true;
      say(status, "Admitted: connecting the call…", "busy");
      if (party === "patient") await offer(false);
      return room?.refresh();
    case "offer":
      return onOffer(msg);
    case "answer":
      return onAnswer(msg);
    case "candidate":
      return onCandidate(msg);
    case "bye":
      setCallState(msg.state ?? "ended");
      if (Object.hasOwn(ENDED_BECAUSE, msg.reason ?? "")) {
        // The gateway closed a socket: a revocation, a consent, an emergency access ended.
        return finish(`The call was ended: ${ENDED_BECAUSE[msg.reason]}.`);
      }
      return finish(
        msg.from === party ? "You ended the call." : `The ${msg.from ?? "other side"} ended the call.`,
      );
    case "vitals":
      return vitals?.add(msg);
    case "vitals_stopped":
      return vitals?.stop();
    case "error":
      if (msg.error === NOT_CONNECTED) {
        // Nobody to answer our offer: take it back, the other side offers when it joins.
        if (pc?.signalingState === "have-local-offer") {
          await pc.setLocalDescription({ type: "rollback" });
        }
        say(status, `Waiting for the ${party === "patient" ? "provider" : "patient"} to join the call…`, "busy");
        return;
      }
      say(status, `the gateway refused a message: ${msg.error}.`, "error");
      return;
    default:
      return;
  }
}

async function connect() {
  if (ended || leaving) return;
  setSignal(everConnected ? "reconnecting" : "connecting");
  let ticket;
  try {
    ticket = await api(`/v1/sessions/${encodeURIComponent(sid)}/ticket`, { method: "POST" });
  } catch (e) {
    if (e instanceof ApiError && e.status === 409) {
      finish("This call is over.");
      return;
    }
    if (e instanceof ApiError && (e.status === 404 || e.status === 403)) {
      say(status, e.message, "error");
      setSignal("refused");
      return;
    }
    retry(`cannot reach the gateway (${e.message})`);
    return;
  }
  const url = new URL(ticket.ws, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const sock = new WebSocket(url);
  ws = sock;
  debug.sockets += 1;
  sock.onopen = () => {
    retryMs = 500;
    setSignal("connected");
  };
  sock.onmessage = (event) => {
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch {
      return;
    }
    if (msg && typeof msg === "object") enqueue(() => onMessage(msg));
  };
  sock.onclose = () => {
    if (ws !== sock) return;
    ws = null;
    if (!ended && !leaving) retry("the connection to the gateway dropped");
  };
}

function retry(why) {
  setSignal("reconnecting");
  say(status, `${why}: reconnecting…`, "busy");
  setTimeout(connect, retryMs);
  retryMs = Math.min(retryMs * 2, 8000);
}

addEventListener("pagehide", () => {
  leaving = true;
  ws?.close(1001, "page closed");
});

byId("end").addEventListener("click", async () => {
  byId("end").disabled = true;
  try {
    await api(`/v1/sessions/${encodeURIComponent(sid)}/end`, { method: "POST" });
    finish("You ended the call.");
  } catch (e) {
    byId("end").disabled = false;
    say(status, e.message, "error");
  }
});

// -- start ----------------------------------------------------------------------------------------------

async function start() {
  if (!/^[0-9a-f]{1,64}$/.test(sid)) {
    say(status, "This is not a call link.", "error");
    return;
  }
  holder = await signedIn(status);
  if (!holder) return;
  try {
    session = await api(`/v1/sessions/${encodeURIComponent(sid)}`);
  } catch (e) {
    needIdentity(
      e instanceof ApiError && e.status === 404
        ? `This browser's identity (${holder.sub}) is not part of this call.`
        : e.message,
    );
    return;
  }
  party = holder.sub === session.patient ? "patient" : "provider";
  const other = party === "patient" ? session.provider : session.patient;
  document.body.dataset.party = party;
  byId("title").textContent = party === "patient" ? "Your video call" : "Video call with your patient";
  const names = namesOf(session);
  byId("call-info").replaceChildren(
    party === "patient" ? "With provider " : "With patient ",
    person(other, names),
  );
  byId("remote-caption").textContent =
    names.get(other) ?? (party === "patient" ? "Your provider" : "Your patient");
  byId("call").hidden = false;
  byId("route").textContent = routeText(null);
  setCallState(session.state);
  if (FINAL.has(session.state)) {
    finish("This call is over.");
    return;
  }
  if (party === "provider") {
    room = new WaitingRoom(sid, () => LIVE.has(callState));
    vitals = new VitalsPanel(session.patient);
    room.start();
    vitals.show();
  }
  media = startMedia();
  connect();
}

start().finally(() => {
  document.body.dataset.ready = "true";
});
