#!/usr/bin/env node
// Judges one client.js result (used by scripts/socketio-test.sh).
//
//   node check.js --result FILE --expect pass|fail --ports P1,P2,P3,P4
//                 [--session-unknown N] [--sticky yes|no]
//                 [--instances A,B,C [--src-map FILE] [--rotated yes]] [--spread no]
//
// --expect pass (the cluster behind a correct proxy):
//   * every client connected, got its echo ack, and received the one broadcast;
//   * no client-side error at all, and no "Session ID unknown" on any node (N = 0);
//   * spread: each of the 4 nodes has between 22 and 28 of 100 clients. Rule: an even share is
//     clients/4 (25); allowed is that share ± 10 %, widened to whole clients:
//     floor(0.9 × share) .. ceil(1.1 × share) = 22..28 for 100 clients (22.5 → 22, 27.5 → 28);
//     every node must appear, and only the 4 nodes (--spread no: only the latter, for a hash of
//     random keys, which is not even);
//   * final transport: websocket for default (upgraded) and websocket mode, polling for polling;
//   * with --sticky yes and a polling transport (default, polling): every ack shows the node saw
//     the sticky cookie on the session's latest request (the client really sends it back).
// --instances (scripts/cluster.sh: the proxy instances' addresses, as the nodes see them):
//   * every instance brought clients and only those did (per_via), and each source address's
//     clients all came through one instance: the balancer hashes the client address;
//   * --src-map FILE: that address -> instance map must equal the one in FILE (an earlier
//     mode's, so every mode is hashed alike); when FILE does not exist it is written;
//   * --rotated yes (client.js --rotate-src): instead, every session's requests came
//     through every instance, and no client's acks came from two nodes.
// --expect fail (round robin without stickiness, polling transports):
//   * most clients do not complete: fewer than half got their echo ack, and
//   * the nodes refused requests with "Session ID unknown" (N > 0).
//
// Prints one summary line and, for each broken expectation, a line starting with "FAIL".
// Exit 0 when every expectation holds, 1 otherwise, 2 on bad arguments or unreadable input.
"use strict";

const fs = require("fs");

const opt = {
  result: null,
  expect: null,
  ports: null,
  sessionUnknown: null,
  sticky: "no",
  instances: null,
  srcMap: null,
  rotated: "no",
  spread: "yes",
};
{
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i += 2) {
    const [k, v] = [a[i], a[i + 1]];
    if (v === undefined) fail2(`${k} needs a value`);
    if (k === "--result") opt.result = v;
    else if (k === "--expect") opt.expect = v;
    else if (k === "--ports") opt.ports = v.split(",").filter(Boolean).map(String);
    else if (k === "--session-unknown") opt.sessionUnknown = Number(v);
    else if (k === "--sticky") opt.sticky = v;
    else if (k === "--instances") opt.instances = v.split(",").filter(Boolean);
    else if (k === "--src-map") opt.srcMap = v;
    else if (k === "--rotated") opt.rotated = v;
    else if (k === "--spread") opt.spread = v;
    else fail2(`unknown flag ${k}`);
  }
}
function fail2(msg) {
  console.error(`check.js: ${msg}`);
  process.exit(2);
}
if (!opt.result || !["pass", "fail"].includes(opt.expect) || !opt.ports) {
  fail2("usage: --result FILE --expect pass|fail --ports P1,P2,... [--session-unknown N] [--sticky yes|no]");
}

let r;
try {
  r = JSON.parse(fs.readFileSync(opt.result, "utf8").trim().split("\n").pop());
} catch (e) {
  fail2(`cannot read a result from ${opt.result}: ${e.message}`);
}

const n = r.clients;
const problems = [];
const errCount = Object.values(r.errors || {}).reduce((a, b) => a + b, 0);

if (opt.expect === "pass") {
  if (r.connected !== n) problems.push(`connected ${r.connected}/${n}`);
  if (r.acked !== n) problems.push(`echo acked ${r.acked}/${n}`);
  if (r.broadcast_received !== n) problems.push(`broadcast received ${r.broadcast_received}/${n}`);
  if (errCount) problems.push(`client errors: ${JSON.stringify(r.errors)}`);
  if (opt.sessionUnknown !== null && opt.sessionUnknown !== 0) {
    problems.push(`nodes answered "Session ID unknown" ${opt.sessionUnknown} time(s)`);
  }
  const share = n / opt.ports.length;
  const lo = Math.floor(share * 0.9);
  const hi = Math.ceil(share * 1.1);
  for (const p of opt.spread === "no" ? [] : opt.ports) {
    const got = r.per_server[p] || 0;
    if (got < lo || got > hi) problems.push(`node ${p} has ${got} clients, allowed ${lo}..${hi}`);
  }
  for (const p of Object.keys(r.per_server)) {
    if (!opt.ports.includes(p)) problems.push(`ack from unexpected port ${p}`);
  }
  const want = r.transport === "polling" ? "polling" : "websocket";
  if ((r.final_transports[want] || 0) !== n) {
    problems.push(`final transport ${want} for ${r.final_transports[want] || 0}/${n}: ${JSON.stringify(r.final_transports)}`);
  }
  if (opt.sticky === "yes" && r.transport !== "websocket" && r.cookie_sent !== n) {
    problems.push(`sticky cookie seen by the node for ${r.cookie_sent}/${n} clients`);
  }
  if (opt.instances) checkInstances();
} else {
  if (!(r.acked < n / 2)) problems.push(`expected most clients to fail without stickiness, but ${r.acked}/${n} completed`);
  if (opt.sessionUnknown !== null && !(opt.sessionUnknown > 0)) {
    problems.push(`expected "Session ID unknown" on the nodes, saw none`);
  }
}

function checkInstances() {
  const per = r.per_via || {};
  for (const v of Object.keys(per)) {
    if (!opt.instances.includes(v)) problems.push(`clients came through ${v}, not one of the instances`);
  }
  if (opt.rotated === "yes") {
    const all = String(opt.instances.length);
    const crossed = (r.vias_per_client || {})[all] || 0;
    if (crossed !== n) problems.push(`${crossed}/${n} sessions crossed all ${all} instances: ${JSON.stringify(r.vias_per_client)}`);
    if (r.backend_changes) problems.push(`${r.backend_changes} client(s) were answered by two nodes`);
    return;
  }
  for (const v of opt.instances) if (!per[v]) problems.push(`instance ${v} brought no client`);
  const map = {};
  for (const [src, vias] of Object.entries(r.via_by_src || {})) {
    if (vias.length !== 1) problems.push(`clients from ${src} came through ${vias.join(" and ")}`);
    map[src] = vias[0];
  }
  if (opt.srcMap) {
    if (fs.existsSync(opt.srcMap)) {
      const want = JSON.parse(fs.readFileSync(opt.srcMap, "utf8"));
      const differ = Object.keys(map).filter((s) => s in want && want[s] !== map[s]);
      if (differ.length) problems.push(`${differ.length} source address(es) hashed to another instance than before, e.g. ${differ[0]}`);
    } else {
      fs.writeFileSync(opt.srcMap, JSON.stringify(map));
    }
  }
}

const spread = opt.ports.map((p) => r.per_server[p] || 0).join("/");
const errs = Object.entries(r.errors || {})
  .map(([k, v]) => `${v}× ${k}`)
  .join("; ");
console.log(
  `${r.transport.padEnd(9)} connected ${String(r.connected).padStart(3)}/${n}  acked ${String(r.acked).padStart(3)}` +
    `  broadcast ${String(r.broadcast_received).padStart(3)}  spread ${spread}  final ${JSON.stringify(r.final_transports)}` +
    `  cookie ${r.cookie_sent}  session-unknown ${opt.sessionUnknown ?? "?"}  ${r.duration_ms} ms` +
    (opt.instances ? `  instances ${opt.instances.map((v) => (r.per_via || {})[v] || 0).join("/")}` : "") +
    (opt.rotated === "yes" ? `  instances-per-session ${JSON.stringify(r.vias_per_client)}` : "") +
    (errs ? `\n          errors: ${errs}` : "")
);
for (const p of problems) console.log(`FAIL (expected ${opt.expect}): ${p}`);
process.exit(problems.length ? 1 : 0);
