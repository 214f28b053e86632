#!/usr/bin/env node
// Clients that keep talking while a proxy instance is drained under them (scripts/cluster.sh's
// rolling restart).
//
//   node rolling.js --url URL [--clients 90] [--src-ips A,B,...|A-B] [--interval 100]
//                   [--timeout 60] [--ack-timeout 2000]
//
// Client i uses transport mode i mod 3 -- default (polling, then upgrade), websocket, polling --
// and binds its connections to source address i mod the --src-ips list (as client.js does), so
// the balancer in front hashes it to one instance. Reconnection is ON (what a real client does
// when its proxy goes away). Every --interval ms each connected client emits `echo` with its
// next sequence number, with socket.io's own at-least-once delivery: `retries` and
// `ackTimeout` (socket.io-client >= 4.6) re-send a message until the node acknowledges it, and
// messages emitted while disconnected wait in the send buffer. Each ack names the node (port)
// and the proxy it came through (via).
//
// Prints `ready N` on stderr once every client has connected and had one ack. On SIGUSR2 (or
// at --timeout) it stops emitting, waits for the acks still due (at most 2 x --ack-timeout x
// retries, bounded by the hard limit), and prints ONE JSON line on stdout:
//   sent, acked, lost (emits whose retries ran out: must be 0), per client the first and the
//   last proxy and node (summarised as moved: clients whose proxy changed, by "from>to"),
//   reconnects (connect events after the first), sessions_changed (clients whose engine.io
//   session changed: a new session on a possibly new node), both also by mode,
//   connected_at_end, errors.
// Exit 0 when it ran (failures are data), 1 on an internal error, 2 on bad arguments, 3 at
// the hard time limit.
"use strict";

const http = require("http");
const net = require("net");
const { io } = require("socket.io-client");

function usage(msg) {
  if (msg) console.error(`rolling.js: ${msg}`);
  console.error(
    "usage: node rolling.js --url URL [--clients N] [--src-ips A,B|A-B] [--interval MS] [--timeout S] [--ack-timeout MS]"
  );
  process.exit(2);
}

const opt = { url: null, clients: 90, srcIps: [], interval: 100, timeout: 60, ackTimeout: 2000 };
{
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i += 2) {
    const [k, v] = [a[i], a[i + 1]];
    if (v === undefined) usage(`${k} needs a value`);
    if (k === "--url") opt.url = v;
    else if (k === "--clients") opt.clients = Number(v);
    else if (k === "--src-ips") opt.srcIps = parseIps(v);
    else if (k === "--interval") opt.interval = Number(v);
    else if (k === "--timeout") opt.timeout = Number(v);
    else if (k === "--ack-timeout") opt.ackTimeout = Number(v);
    else usage(`unknown flag ${k}`);
  }
}
if (!opt.url) usage("--url is required");
if (!Number.isInteger(opt.clients) || opt.clients < 1) usage("--clients must be a positive integer");
if (!(opt.interval >= 10)) usage("--interval must be >= 10 ms");
if (!(opt.timeout > 0)) usage("--timeout must be > 0");
if (!(opt.ackTimeout >= 100)) usage("--ack-timeout must be >= 100 ms");

function parseIps(v) {
  const toN = (a) => {
    if (!net.isIPv4(a)) usage(`bad address ${a} in --src-ips`);
    return a.split(".").reduce((n, o) => n * 256 + Number(o), 0);
  };
  const toA = (n) => [24, 16, 8, 0].map((b) => Math.floor(n / 2 ** b) % 256).join(".");
  if (v.includes("-")) {
    const [lo, hi] = v.split("-").map(toN);
    if (hi < lo || hi - lo > 65535) usage(`bad range ${v} in --src-ips`);
    const out = [];
    for (let n = lo; n <= hi; n++) out.push(toA(n));
    return out;
  }
  return v.split(",").filter(Boolean).map((a) => toA(toN(a)));
}

// Every request on a new connection from the client's own source address.
class SourceAgent extends http.Agent {
  constructor(addr) {
    super({ keepAlive: false });
    this.addr = addr;
  }
  createConnection(options, cb) {
    return net.createConnection({ ...options, localAddress: this.addr }, cb);
  }
}

const MODES = [
  { name: "default", transports: ["polling", "websocket"], upgrade: true },
  { name: "websocket", transports: ["websocket"], upgrade: false },
  { name: "polling", transports: ["polling"], upgrade: false },
];
const RETRIES = 10;

const t0 = Date.now();
const errors = {};
const addError = (k) => (errors[k] = (errors[k] || 0) + 1);
let emitting = true;
let sent = 0;
let acked = 0;
let lost = 0;
const clients = [];

function makeClient(i) {
  const mode = MODES[i % MODES.length];
  const c = {
    i,
    mode: mode.name,
    connects: 0,
    seq: 0,
    pending: 0,
    firstVia: null,
    lastVia: null,
    firstPort: null,
    lastPort: null,
    sids: new Set(),
    ready: false,
  };
  const extra = opt.srcIps.length ? { agent: new SourceAgent(opt.srcIps[i % opt.srcIps.length]) } : {};
  const socket = io(opt.url, {
    ...extra,
    forceNew: true,
    transports: mode.transports,
    upgrade: mode.upgrade,
    withCredentials: true,
    reconnection: true,
    reconnectionDelay: 200,
    reconnectionDelayMax: 1000,
    retries: RETRIES,
    ackTimeout: opt.ackTimeout,
  });
  c.socket = socket;
  socket.on("connect", () => {
    c.connects++;
    c.sids.add(socket.io.engine && socket.io.engine.id);
  });
  socket.on("connect_error", (e) => addError(`connect_error: ${e && e.message}`));
  socket.on("disconnect", (reason) => {
    if (emitting) addError(`disconnect: ${reason}`);
  });
  c.tick = () => {
    if (!emitting || !socket.connected) return;
    const n = ++c.seq;
    sent++;
    c.pending++;
    socket.emit("echo", { i, n }, (err, resp) => {
      c.pending--;
      if (err || !resp || !resp.payload || resp.payload.n !== n) {
        lost++;
        addError(err ? `echo lost: ${err.message}` : "echo: wrong payload in ack");
        return;
      }
      acked++;
      c.ready = true;
      if (c.firstVia === null) {
        c.firstVia = resp.via;
        c.firstPort = resp.port;
      }
      c.lastVia = resp.via;
      c.lastPort = resp.port;
    });
  };
  return c;
}

function finish() {
  if (!emitting) return;
  emitting = false;
  clearInterval(timer);
  const until = Date.now() + 2 * opt.ackTimeout * RETRIES;
  const wait = () => {
    if (clients.every((c) => c.pending === 0) || Date.now() >= until) return report();
    setTimeout(wait, 20);
  };
  wait();
}

function report() {
  const moved = {};
  const firstVia = {};
  let sessionsChanged = 0;
  const sessionsChangedByMode = {};
  const movedByMode = {};
  for (const c of clients) {
    firstVia[c.firstVia] = (firstVia[c.firstVia] || 0) + 1;
    if (c.firstVia !== c.lastVia) {
      const k = `${c.firstVia}>${c.lastVia}`;
      moved[k] = (moved[k] || 0) + 1;
      movedByMode[c.mode] = (movedByMode[c.mode] || 0) + 1;
    }
    if (c.sids.size > 1) {
      sessionsChanged++;
      sessionsChangedByMode[c.mode] = (sessionsChangedByMode[c.mode] || 0) + 1;
    }
  }
  const pendingAtEnd = clients.reduce((a, c) => a + c.pending, 0);
  const result = {
    clients: opt.clients,
    sent,
    acked,
    lost,
    pending_at_end: pendingAtEnd,
    first_via: firstVia,
    moved,
    moved_total: Object.values(moved).reduce((a, b) => a + b, 0),
    reconnects: clients.reduce((a, c) => a + Math.max(0, c.connects - 1), 0),
    moved_by_mode: movedByMode,
    sessions_changed: sessionsChanged,
    sessions_changed_by_mode: sessionsChangedByMode,
    connected_at_end: clients.filter((c) => c.socket.connected).length,
    errors,
    duration_ms: Date.now() - t0,
  };
  for (const c of clients) c.socket.disconnect();
  // A polling client's disconnect is a POST (and its pending long-poll GET is answered by
  // the node): give them a moment to go out, or the node keeps the session and the proxy
  // keeps that GET in flight until the node's next ping (25 s).
  process.stdout.write(JSON.stringify(result) + "\n", () => setTimeout(() => process.exit(0), 500));
}

for (let i = 0; i < opt.clients; i++) clients.push(makeClient(i));
const timer = setInterval(() => {
  for (const c of clients) c.tick();
}, opt.interval);
let announced = false;
const readyCheck = setInterval(() => {
  if (!announced && clients.every((c) => c.ready)) {
    announced = true;
    clearInterval(readyCheck);
    console.error(`ready ${clients.length}`);
  }
}, 20);
process.on("SIGUSR2", finish);
setTimeout(finish, opt.timeout * 1000).unref();
setTimeout(() => {
  console.error("rolling.js: hard time limit reached");
  process.exit(3);
}, opt.timeout * 1000 + 2 * opt.ackTimeout * RETRIES + 5000).unref();
