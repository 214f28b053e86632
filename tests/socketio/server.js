#!/usr/bin/env node
// One node of the seed cluster: a socket.io v4 server on 127.0.0.1:PORT whose nodes share
// state through Redis (@socket.io/redis-adapter, pub/sub on 127.0.0.1:REDIS_PORT).
//
//   node server.js PORT REDIS_PORT [--cookie NAME] [--host ADDR]
//
// PORT 0 picks a free port. Prints `listening PORT` (the real port) once it is ready.
// --host: the address to listen on (default 127.0.0.1; scripts/cluster.sh gives the backend
// host's address inside its network namespace). Redis is always on 127.0.0.1.
//
// Events:
//   echo (acknowledged): acks { payload, port, transport, cookie } where `cookie` is the value
//        of the sticky cookie NAME (default io_srv) carried by the latest HTTP request of this
//        engine.io session (the POST that brought the echo in polling, the upgrade request
//        after an upgrade), or null: it shows the client really sends the sticky cookie.
//        Also `via` (the peer address of that latest request: which proxy instance brought
//        it, in scripts/cluster.sh) and `vias` (every peer address this session's requests
//        came from, the handshake's included).
//   shout: io.emit('broadcast', payload) -- through Redis to every node of the cluster.
//
// Logs `connection_error CODE MESSAGE METHOD URL` for each request engine.io refuses.
"use strict";

const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

function usage(msg) {
  if (msg) console.error(`server.js: ${msg}`);
  console.error("usage: node server.js PORT REDIS_PORT [--cookie NAME]");
  process.exit(2);
}

const argv = process.argv.slice(2);
let cookieName = "io_srv";
let host = "127.0.0.1";
const pos = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--cookie") cookieName = argv[++i];
  else if (argv[i] === "--host") host = argv[++i];
  else pos.push(argv[i]);
}
if (!host) usage("--host needs an address");
if (pos.length !== 2) usage("need PORT and REDIS_PORT");
const port = Number(pos[0]);
const redisPort = Number(pos[1]);
if (!Number.isInteger(port) || port < 0 || port > 65535) usage(`bad PORT ${pos[0]}`);
if (!Number.isInteger(redisPort) || redisPort < 1 || redisPort > 65535) usage(`bad REDIS_PORT ${pos[1]}`);

function cookieValue(header, name) {
  if (!header) return null;
  for (const part of String(header).split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}

function sidOf(url) {
  const q = url.indexOf("?");
  if (q < 0) return null;
  return new URLSearchParams(url.slice(q + 1)).get("sid");
}

async function main() {
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  for (const c of [pub, sub]) c.on("error", (e) => console.error(`server.js: redis: ${e.message}`));
  await Promise.all([pub.connect(), sub.connect()]);

  const httpServer = http.createServer();
  const io = new Server(httpServer, {
    adapter: createAdapter(pub, sub),
    // No CORS needed: the node client sends no Origin.
  });

  // sid -> sticky cookie value of the latest request of that engine.io session. Engine.io has
  // installed its own listeners by now; prepend so ours runs before it handles the request.
  const lastCookie = new Map();
  // sid -> { last: peer address of the latest request, all: Set of every peer address }.
  const peers = new Map();
  const peerOf = (req) => String((req.socket && req.socket.remoteAddress) || "").replace(/^::ffff:/, "");
  const notePeer = (sid, addr) => {
    let p = peers.get(sid);
    if (!p) peers.set(sid, (p = { last: addr, all: new Set() }));
    p.last = addr;
    p.all.add(addr);
  };
  const note = (req) => {
    const sid = sidOf(req.url || "");
    if (sid) {
      lastCookie.set(sid, cookieValue(req.headers.cookie, cookieName));
      notePeer(sid, peerOf(req));
    }
  };
  httpServer.prependListener("request", note);
  httpServer.prependListener("upgrade", note);

  // Requests engine.io refuses, one line each: a polling request that reaches a node that does
  // not know its session gives "connection_error 1 Session ID unknown" (HTTP 400) -- the
  // runner counts these lines to show what stickiness prevents.
  io.engine.on("connection_error", (err) => {
    console.log(`connection_error ${err.code} ${err.message} ${err.req && err.req.method} ${err.req && err.req.url}`);
  });

  let live = 0;
  let total = 0;
  io.on("connection", (socket) => {
    socket.data.server = actualPort;
    live++;
    total++;
    const sid = socket.conn.id;
    // The handshake request carries no sid yet: add its peer now (the latest one stays).
    const hs = String(socket.handshake.address || "").replace(/^::ffff:/, "");
    if (peers.has(sid)) peers.get(sid).all.add(hs);
    else notePeer(sid, hs);
    socket.conn.on("close", () => {
      lastCookie.delete(sid);
      peers.delete(sid);
    });
    socket.on("disconnect", () => {
      live--;
    });
    socket.on("echo", (payload, ack) => {
      if (typeof ack !== "function") return;
      ack({
        payload,
        port: actualPort,
        transport: socket.conn.transport.name,
        cookie: lastCookie.has(sid) ? lastCookie.get(sid) : null,
        via: peers.has(sid) ? peers.get(sid).last : null,
        vias: peers.has(sid) ? [...peers.get(sid).all] : [],
      });
    });
    socket.on("shout", (payload, ack) => {
      io.emit("broadcast", { payload, from: actualPort });
      if (typeof ack === "function") ack({ port: actualPort });
    });
  });

  let actualPort = port;
  await new Promise((resolve, reject) => {
    httpServer.once("error", reject);
    httpServer.listen(port, host, resolve);
  });
  actualPort = httpServer.address().port;
  console.log(`listening ${actualPort}`);

  const stop = () => {
    console.log(`server ${actualPort}: stopping (connections: ${total} total, ${live} live)`);
    // Redis may already be gone (the runner stops it too): never wait on it for long.
    setTimeout(() => process.exit(0), 500).unref();
    io.close();
    Promise.allSettled([pub.disconnect(), sub.disconnect()]).then(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => {
  console.error(`server.js: ${e.stack || e}`);
  process.exit(1);
});
