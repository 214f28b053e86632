#!/usr/bin/env node
// How many idle socket.io WebSocket sessions a set of proxies holds (scripts/cluster.sh's
// ceiling step): opens --clients N websocket-only socket.io clients, at most --in-flight
// setting up at once, each from source address i mod the --src-ips list (so the L4 balancer
// spreads them over the instances), holds every one that connected for --hold seconds, then
// probes each with one acknowledged echo.
//
//   node ceiling.js --url URL --clients N [--src-ips A,B|A-B] [--in-flight 200]
//                   [--hold 2] [--timeout 10]
//
// A client is held when its socket.io connect succeeded (one tunnel through one instance);
// a proxy at its budget refuses the upgrade (503 or a reset), which is a connect_error here.
// Reconnection is off: a refusal is final, it is what we measure.
//
// Prints ONE JSON line: attempted, held, refused (by error message), dropped (held, then
// disconnected before the probe), probe_ok, per_via (held clients by the proxy their probe
// came through), per_server (by node), duration_ms.
// Exit 0 when it ran, 1 on an internal error, 2 on bad arguments, 3 at the hard time limit.
"use strict";

const http = require("http");
const net = require("net");
const { io } = require("socket.io-client");

function usage(msg) {
  if (msg) console.error(`ceiling.js: ${msg}`);
  console.error(
    "usage: node ceiling.js --url URL --clients N [--src-ips A,B|A-B] [--in-flight K] [--hold S] [--timeout S]"
  );
  process.exit(2);
}

const opt = { url: null, clients: 0, srcIps: [], inFlight: 200, hold: 2, timeout: 10 };
{
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i += 2) {
    const [k, v] = [a[i], a[i + 1]];
    if (v === undefined) usage(`${k} needs a value`);
    if (k === "--url") opt.url = v;
    else if (k === "--clients") opt.clients = Number(v);
    else if (k === "--src-ips") opt.srcIps = parseIps(v);
    else if (k === "--in-flight") opt.inFlight = Number(v);
    else if (k === "--hold") opt.hold = Number(v);
    else if (k === "--timeout") opt.timeout = Number(v);
    else usage(`unknown flag ${k}`);
  }
}
if (!opt.url) usage("--url is required");
if (!Number.isInteger(opt.clients) || opt.clients < 1) usage("--clients must be a positive integer");
if (!Number.isInteger(opt.inFlight) || opt.inFlight < 1) usage("--in-flight must be a positive integer");
if (!(opt.hold >= 0)) usage("--hold must be >= 0");
if (!(opt.timeout > 0)) usage("--timeout must be > 0");

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

class SourceAgent extends http.Agent {
  constructor(addr) {
    super({ keepAlive: false });
    this.addr = addr;
  }
  createConnection(options, cb) {
    return net.createConnection({ ...options, localAddress: this.addr }, cb);
  }
}

const t0 = Date.now();
const refused = {};
const clients = [];
let inFlight = 0;
let next = 0;
let settled = 0;

function open(i) {
  inFlight++;
  const c = { i, held: false, dropped: false, probe: null, socket: null };
  const extra = opt.srcIps.length ? { agent: new SourceAgent(opt.srcIps[i % opt.srcIps.length]) } : {};
  const socket = io(opt.url, {
    ...extra,
    forceNew: true,
    reconnection: false,
    transports: ["websocket"],
    upgrade: false,
    timeout: opt.timeout * 1000,
  });
  c.socket = socket;
  const done = () => {
    inFlight--;
    settled++;
    pump();
  };
  socket.on("connect", () => {
    c.held = true;
    done();
  });
  socket.on("connect_error", (e) => {
    const k = String((e && (e.description && e.description.message)) || (e && e.message) || e);
    refused[k] = (refused[k] || 0) + 1;
    done();
  });
  socket.on("disconnect", () => {
    if (c.held && c.probe === null) c.dropped = true;
  });
  clients.push(c);
}

function pump() {
  while (inFlight < opt.inFlight && next < opt.clients) open(next++);
  if (settled === opt.clients) held();
}

let holding = false;
function held() {
  if (holding) return;
  holding = true;
  setTimeout(probe, opt.hold * 1000);
}

function probe() {
  const live = clients.filter((c) => c.held && !c.dropped && c.socket.connected);
  let left = live.length;
  if (!left) return report();
  for (const c of live) {
    c.socket.timeout(opt.timeout * 1000).emit("echo", { i: c.i }, (err, resp) => {
      c.probe = err ? false : resp;
      if (--left === 0) report();
    });
  }
}

function report() {
  const per_via = {};
  const per_server = {};
  let probeOk = 0;
  for (const c of clients) {
    if (!c.probe) continue;
    probeOk++;
    per_via[c.probe.via] = (per_via[c.probe.via] || 0) + 1;
    per_server[c.probe.port] = (per_server[c.probe.port] || 0) + 1;
  }
  const result = {
    attempted: opt.clients,
    held: clients.filter((c) => c.held).length,
    refused,
    dropped: clients.filter((c) => c.dropped).length,
    probe_ok: probeOk,
    per_via,
    per_server,
    duration_ms: Date.now() - t0,
  };
  for (const c of clients) c.socket.disconnect();
  process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(0));
}

setTimeout(() => {
  console.error("ceiling.js: hard time limit reached");
  process.exit(3);
}, (opt.timeout * 3 + opt.hold) * 1000 + 30000).unref();
pump();
