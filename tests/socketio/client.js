#!/usr/bin/env node
// N real socket.io-client v4 clients against one URL (the proxy in front of the cluster).
//
//   node client.js --url http://127.0.0.1:PORT [--clients 100]
//                  [--transport default|websocket|polling] [--timeout 20] [--cookie io_srv]
//                  [--src-ips A,B,...|A-B] [--rotate-src] [--echoes 1] [--header NAME]
//
//   default   : long-polling first, then upgrade to WebSocket (what a browser does)
//   websocket : transports: ['websocket'] (one upgrade request, no polling)
//   polling   : transports: ['polling'] (every packet is an HTTP request)
//
// Each client connects, sends an acknowledged `echo` and checks the ack (payload back + the
// port of the node that answered); every 10th echo carries ~100 KB. When every client has settled, ONE client sends `shout`;
// its node io.emit()s `broadcast`, which reaches the other nodes through Redis, and every
// client must receive it. In default mode we then wait (bounded) for the upgrades to finish
// and record each client's final transport.
//
// Cookies: engine.io-client keeps a cookie jar in Node only with `withCredentials: true`
// (engine.io-client >= 6.5); without it the sticky cookie would never be sent back. The node
// echoes the sticky cookie value it saw on the latest request of the session; `cookie_sent`
// counts the acks that carried it.
//
// Source addresses (scripts/cluster.sh, where an L4 balancer hashes the client address):
// --src-ips gives a list (or an IPv4 range A-B) and client i binds every connection to
// address i mod the list's length. With --rotate-src each new TCP connection of a client
// takes the next address instead (client i starts at address i), so one session's requests
// -- every long-poll GET and POST is its own connection in Node -- reach the balancer from
// different addresses and so different proxy instances. --echoes K sends K acknowledged
// echoes one after another (default 1). --header NAME sends NAME: <a key of its own> on every
// request of client i (a key for `--balance hash --hash-key http_NAME`). Each ack names the proxy the request came through
// (`via`, the node's peer address) and every proxy this session used (`vias`); the output
// adds per_via (clients by the proxy of their last ack), via_by_src (source address -> the
// proxies its clients came through), vias_per_client (how many proxies one session crossed:
// count of clients) and backend_changes (clients whose acks came from more than one node).
//
// Output: ONE JSON line on stdout. Exit 0 when the run finished (failures are data), 1 on an
// internal error, 2 on bad arguments, 3 if the hard time limit had to stop it.
"use strict";

const http = require("http");
const net = require("net");
const { io } = require("socket.io-client");

function usage(msg) {
  if (msg) console.error(`client.js: ${msg}`);
  console.error(
    "usage: node client.js --url URL [--clients N] [--transport default|websocket|polling] [--timeout SECONDS] [--cookie NAME] [--src-ips A,B|A-B] [--rotate-src] [--echoes K] [--header NAME]"
  );
  process.exit(2);
}

const opt = {
  url: null,
  clients: 100,
  transport: "default",
  timeout: 20,
  cookie: "io_srv",
  srcIps: [],
  rotateSrc: false,
  echoes: 1,
  header: null,
};
{
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    const k = a[i];
    if (k === "--rotate-src") {
      opt.rotateSrc = true;
      continue;
    }
    const v = a[i + 1];
    if (v === undefined) usage(`${k} needs a value`);
    i++;
    if (k === "--url") opt.url = v;
    else if (k === "--clients") opt.clients = Number(v);
    else if (k === "--transport") opt.transport = v;
    else if (k === "--timeout") opt.timeout = Number(v);
    else if (k === "--cookie") opt.cookie = v;
    else if (k === "--src-ips") opt.srcIps = parseIps(v);
    else if (k === "--echoes") opt.echoes = Number(v);
    else if (k === "--header") opt.header = v;
    else usage(`unknown flag ${k}`);
  }
}
if (!opt.url) usage("--url is required");
if (!Number.isInteger(opt.clients) || opt.clients < 1) usage("--clients must be a positive integer");
if (!["default", "websocket", "polling"].includes(opt.transport)) usage(`bad --transport ${opt.transport}`);
if (!(opt.timeout > 0)) usage("--timeout must be > 0");
if (!Number.isInteger(opt.echoes) || opt.echoes < 1) usage("--echoes must be a positive integer");
if (opt.rotateSrc && opt.srcIps.length < 2) usage("--rotate-src needs at least two --src-ips");

// "A,B,C" or "A-B" (IPv4, inclusive) -> list of addresses.
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

// An agent that opens a new connection for every request (as engine.io-client does in Node
// without one) from a chosen source address: `pick()` is asked at every connection.
class SourceAgent extends http.Agent {
  constructor(pick) {
    super({ keepAlive: false });
    this.pick = pick;
  }
  createConnection(options, cb) {
    return net.createConnection({ ...options, localAddress: this.pick() }, cb);
  }
}

const TRANSPORTS = {
  default: ["polling", "websocket"],
  websocket: ["websocket"],
  polling: ["polling"],
};

const t0 = Date.now();
const deadline = t0 + opt.timeout * 1000;
// Phases share the budget: connect+echo up to 60 %, broadcast up to 85 %, upgrades the rest.
const connectDeadline = t0 + opt.timeout * 600;
const broadcastDeadline = t0 + opt.timeout * 850;

const errors = {};
function addError(key) {
  errors[key] = (errors[key] || 0) + 1;
}
function describe(err) {
  if (err == null) return "";
  if (typeof err === "number" || typeof err === "string") return String(err);
  if (err instanceof Error) {
    let s = err.message;
    if (err.description !== undefined) {
      const d = err.description;
      s += ` (${d instanceof Error ? d.message : typeof d === "object" ? d.message || d.type || JSON.stringify(d) : d})`;
    }
    return s;
  }
  if (typeof err === "object") return err.message || err.type || JSON.stringify(err);
  return String(err);
}

let closing = false;
const shoutId = `shout-${process.pid}-${t0}`;
const clients = [];

function settled(c) {
  return c.failed || c.acked || c.ackFailed;
}

function makeClient(i) {
  const c = {
    i,
    socket: null,
    connected: false, // ever connected
    failed: false, // connect_error (reconnection is off: final)
    acked: false,
    ackFailed: false,
    port: null,
    cookie: null,
    broadcast: false,
    upgradeSettled: false,
    src: null, // the source address of its first connection (--src-ips)
    via: null, // the proxy its last ack came through
    vias: new Set(), // every proxy its session's requests came through
    ports: new Set(), // every node that answered its acks
  };
  const source = {};
  if (opt.srcIps.length) {
    let next = i;
    c.src = opt.srcIps[i % opt.srcIps.length];
    const pick = opt.rotateSrc ? () => opt.srcIps[next++ % opt.srcIps.length] : () => c.src;
    source.agent = new SourceAgent(pick);
  }
  if (opt.header) source.extraHeaders = { [opt.header]: `key-${process.pid}-${i}` };
  const socket = io(opt.url, {
    ...source,
    forceNew: true, // one Manager (one engine.io session, one cookie jar) per client
    reconnection: false, // a failure is final: it is what we measure
    transports: TRANSPORTS[opt.transport],
    upgrade: opt.transport === "default",
    withCredentials: true, // keeps the cookie jar in Node (sticky cookie)
    timeout: Math.max(1000, connectDeadline - Date.now()),
  });
  c.socket = socket;

  socket.io.on("open", () => {
    const engine = socket.io.engine;
    engine.on("upgrade", () => {
      c.upgradeSettled = true;
    });
    engine.on("upgradeError", (e) => {
      c.upgradeSettled = true;
      addError(`upgradeError: ${describe(e)}`);
    });
  });

  socket.on("connect", () => {
    c.connected = true;
    const nonce = `${i}-${Math.random().toString(36).slice(2)}`;
    // Mostly small bodies; every 10th client sends ~100 KB, so in polling the POST body (and the
    // poll response carrying the ack) spans many reads/writes through the proxy.
    const padLen = i % 10 === 9 ? 100000 + i : 64 + (i % 200);
    const body = { i, nonce, pad: String.fromCharCode(97 + (i % 26)).repeat(padLen) };
    let left = opt.echoes;
    const echo = () => {
      socket.timeout(Math.max(1000, connectDeadline - Date.now())).emit("echo", body, (err, resp) => {
        if (err) {
          c.ackFailed = true;
          addError(`echo: ${describe(err)}`);
          return;
        }
        if (!resp || !resp.payload || resp.payload.nonce !== nonce || resp.payload.pad !== body.pad) {
          c.ackFailed = true;
          addError("echo: wrong payload in ack");
          return;
        }
        c.port = resp.port;
        c.ports.add(resp.port);
        c.cookie = resp.cookie;
        c.via = resp.via || null;
        for (const v of resp.vias || []) c.vias.add(v);
        if (--left > 0) echo();
        else c.acked = true;
      });
    };
    echo();
  });
  socket.on("connect_error", (err) => {
    c.failed = true;
    addError(`connect_error: ${describe(err)}`);
  });
  socket.on("disconnect", (reason, details) => {
    // Before a first connect the connect_error above already tells what went wrong.
    if (closing || !c.connected) return;
    addError(`disconnect: ${reason}${details ? ` (${describe(details.description || details)})` : ""}`);
  });
  socket.on("broadcast", (msg) => {
    if (msg && msg.payload && msg.payload.id === shoutId) c.broadcast = true;
  });
  return c;
}

function waitUntil(pred, until) {
  return new Promise((resolve) => {
    const tick = () => {
      if (pred() || Date.now() >= until) return resolve(pred());
      setTimeout(tick, 20);
    };
    tick();
  });
}

function finalTransport(c) {
  const engine = c.socket.io.engine;
  if (!c.socket.connected || !engine || !engine.transport) return "none";
  return engine.transport.name;
}

async function main() {
  for (let i = 0; i < opt.clients; i++) clients.push(makeClient(i));

  // 1. connect + acknowledged echo
  await waitUntil(() => clients.every(settled), connectDeadline);
  const unsettled = clients.filter((c) => !settled(c)).length;
  if (unsettled) addError("timeout: not connected+acked in time");

  // 2. one client shouts; every client must get the broadcast (through Redis)
  let shoutFrom = null;
  const shouter = clients.find((c) => c.acked && c.socket.connected);
  if (shouter) {
    shoutFrom = shouter.port;
    shouter.socket.emit("shout", { id: shoutId });
    const ok = await waitUntil(
      () => clients.every((c) => c.broadcast || !c.socket.connected),
      broadcastDeadline
    );
    if (!ok) addError("timeout: broadcast not received by every connected client in time");
  } else {
    addError("shout: no connected client to shout");
  }

  // 3. default mode: wait for the upgrades to settle (websocket, or an upgrade error)
  if (opt.transport === "default") {
    await waitUntil(
      () => clients.every((c) => !c.socket.connected || c.upgradeSettled),
      deadline
    );
  }

  const per_server = {};
  const final_transports = {};
  const per_via = {};
  const via_by_src = {};
  const vias_per_client = {};
  let backend_changes = 0;
  for (const c of clients) {
    if (c.port != null) per_server[c.port] = (per_server[c.port] || 0) + 1;
    const t = finalTransport(c);
    final_transports[t] = (final_transports[t] || 0) + 1;
    if (!c.acked) continue;
    if (c.via) per_via[c.via] = (per_via[c.via] || 0) + 1;
    if (c.src) {
      const s = (via_by_src[c.src] = via_by_src[c.src] || []);
      for (const v of c.vias) if (!s.includes(v)) s.push(v);
    }
    vias_per_client[c.vias.size] = (vias_per_client[c.vias.size] || 0) + 1;
    if (c.ports.size > 1) backend_changes++;
  }
  const result = {
    transport: opt.transport,
    clients: opt.clients,
    connected: clients.filter((c) => c.connected).length,
    acked: clients.filter((c) => c.acked).length,
    broadcast_received: clients.filter((c) => c.broadcast).length,
    cookie_sent: clients.filter((c) => c.acked && c.cookie).length,
    errors,
    per_server,
    final_transports,
    per_via,
    via_by_src,
    vias_per_client,
    backend_changes,
    shout_from: shoutFrom,
    duration_ms: Date.now() - t0,
  };

  closing = true;
  for (const c of clients) c.socket.disconnect();
  // A polling client's disconnect is a POST (and its pending long-poll GET is answered by
  // the node): give them a moment to go out, or the node keeps the session and the proxy
  // keeps that GET in flight until the node's next ping (25 s).
  process.stdout.write(JSON.stringify(result) + "\n", () => setTimeout(() => process.exit(0), 500));
}

// Hard limit: the phases are bounded by `deadline`; this only catches a bug of our own.
setTimeout(() => {
  console.error("client.js: hard time limit reached");
  process.exit(3);
}, opt.timeout * 1000 + 5000).unref();

main().catch((e) => {
  console.error(`client.js: ${e.stack || e}`);
  process.exit(1);
});
