// Stateful reconnect on any node: the official client with withStatefulReconnect() behind a
// round-robin balancer in front of a three-node cluster; the node holding the connection is
// killed (kill -9) while messages flow in both directions. Run by stateful_test.go:
//
//   RAFTPLANE_URL=<balancer> RAFTPLANE_NODES=<node urls,> RAFTPLANE_CONTROL=<url> node --test stateful.test.mjs
//
// RAFTPLANE_CONTROL/fault?conn=<id> makes the Go test kill -9 (RAFTPLANE_FAULT=kill) or stop
// gracefully (term) the node that holds the connection.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as signalR from "@microsoft/signalr";

const BASE = (process.env.RAFTPLANE_URL ?? "").replace(/\/+$/, "");
const NODES = (process.env.RAFTPLANE_NODES ?? "").split(",").filter(Boolean);
const CONTROL = process.env.RAFTPLANE_CONTROL ?? "";
const PROTOCOL = process.env.RAFTPLANE_PROTOCOL ?? "json";
const FAULT = process.env.RAFTPLANE_FAULT ?? "kill"; // kill: kill -9; term: a graceful stop (SIGTERM)
if (!BASE || NODES.length === 0 || !CONTROL) {
  throw new Error("RAFTPLANE_URL, RAFTPLANE_NODES and RAFTPLANE_CONTROL must be set");
}

const HUB = "chat";
const REST_TOTAL = 300; // messages published through REST while the node dies
const OWN_TOTAL = 60; // messages the client itself sends (invoke) meanwhile
const KILL_AFTER = 60; // REST messages received before the kill

function cursorKey(c) {
  const [, index, offset] = c.split(":");
  return BigInt(index) * 4294967296n + BigInt(offset);
}

async function protocolFor(name, wire) {
  if (name === "messagepack") {
    const mp = await import("@microsoft/signalr-protocol-msgpack");
    return new (class extends mp.MessagePackHubProtocol {
      parseMessages(input, logger) {
        const ms = super.parseMessages(input, logger);
        for (const m of ms) if (m.type === signalR.MessageType.Invocation) wire.push(m.headers?.cursor);
        return ms;
      }
    })();
  }
  return new (class extends signalR.JsonHubProtocol {
    parseMessages(input, logger) {
      const ms = super.parseMessages(input, logger);
      for (const m of ms) if (m.type === signalR.MessageType.Invocation) wire.push(m.headers?.cursor);
      return ms;
    }
  })();
}

// publish sends one message through REST, to node after node, with an idempotency key, until one
// commits it: every message is in the log exactly once.
let aborted = false; // the test failed: background loops stop

async function publish(k) {
  for (let attempt = 0; attempt < 200 && !aborted; attempt++) {
    const node = NODES[(k + attempt) % NODES.length];
    try {
      const r = await fetch(`${node}/api/v1/hubs/${HUB}/groups/room`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Idempotency-Key": `rest-${k}` },
        body: JSON.stringify({ target: "rest", arguments: [k] }),
        signal: AbortSignal.timeout(5000),
      });
      if (r.ok) return;
    } catch {
      // that node is down or timed out: the next one
    }
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`message ${k} was never committed`);
}

test(`stateful reconnect (${PROTOCOL}) continues on another node after ${FAULT === "kill" ? "kill -9" : "a graceful stop"}, exactly once, in order`, { timeout: 120_000 }, async () => {
  const wire = [];
  const conn = new signalR.HubConnectionBuilder()
    .withUrl(`${BASE}/hubs/${HUB}?user=alice`, { transport: signalR.HttpTransportType.WebSockets })
    .withHubProtocol(await protocolFor(PROTOCOL, wire))
    .withStatefulReconnect()
    .withAutomaticReconnect()
    .configureLogging(signalR.LogLevel.Warning)
    .build();
  const got = []; // [kind, k]
  let reconnecting = 0;
  conn.onreconnecting(() => reconnecting++);
  conn.on("rest", (k) => { got.push(["rest", k]); });
  conn.on("own", (k) => { got.push(["own", k]); });
  await conn.start();
  try {
    await run(conn, got, wire, () => reconnecting);
  } catch (e) {
    aborted = true;
    await conn.stop().catch(() => {});
    throw e;
  }
  await conn.stop();
});

async function run(conn, got, wire, reconnects) {
  const id = conn.connectionId;
  await conn.invoke("JoinGroup", "room");

  let killed = null;
  const waitFor = async (pred, what, ms = 60_000) => {
    const end = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; got ${got.length}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const rest = (async () => {
    for (let k = 1; k <= REST_TOTAL && !aborted; k++) {
      await publish(k);
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  const own = (async () => {
    const results = [];
    for (let j = 1; j <= OWN_TOTAL && !aborted; j++) {
      results.push(await conn.invoke("SendToGroup", "room", "own", j));
      await new Promise((r) => setTimeout(r, 20));
    }
    return results;
  })();
  await waitFor(() => got.filter(([kind]) => kind === "rest").length >= KILL_AFTER, "messages before the kill");
  const r = await fetch(`${CONTROL}/fault?conn=${encodeURIComponent(id)}`, { method: "POST" });
  killed = await r.text();
  assert.equal(r.status, 200, `${FAULT}: ${killed}`);
  const killedAt = Date.now(), before = got.length;
  await waitFor(() => got.length > before, "the first message after the kill");
  const resumeMs = Date.now() - killedAt;

  await rest;
  const ownCursors = await own;
  await waitFor(() => got.length >= REST_TOTAL + OWN_TOTAL, "every message");
  await new Promise((r) => setTimeout(r, 500)); // anything extra would be a duplicate

  assert.equal(conn.connectionId, id, "the connection id changed: it was not continued");
  assert.equal(reconnects(), 0, "automatic reconnect ran: the stateful reconnect failed");
  for (const kind of ["rest", "own"]) {
    const ks = got.filter(([k]) => k === kind).map(([, k]) => k);
    const want = Array.from({ length: kind === "rest" ? REST_TOTAL : OWN_TOTAL }, (_, i) => i + 1);
    assert.deepEqual(ks, want, `${kind} messages: lost, duplicated or reordered`);
  }
  assert.equal(got.length, REST_TOTAL + OWN_TOTAL, "extra messages");
  // On the wire, after the reconnect, the new node replays from its last checkpoint and the client
  // drops what it had: a cursor that does not move forward must be one it already received.
  const seen = new Set();
  let max = -1n, replayed = 0;
  for (const c of wire) {
    const k = cursorKey(c);
    if (k > max) {
      max = k;
    } else {
      assert.ok(seen.has(c), `cursor ${c} arrived after ${max}: out of cursor order, and not a replay`);
      replayed++;
    }
    seen.add(c);
  }
  assert.equal(new Set(ownCursors).size, OWN_TOTAL, "an invocation completed twice or with a shared cursor");
  // Still live on its new node.
  const after = await conn.invoke("SendToGroup", "room", "own", OWN_TOTAL + 1);
  assert.ok(after);
  await waitFor(() => got.length === REST_TOTAL + OWN_TOTAL + 1, "a message after the reconnect", 10_000);
  console.log(`${FAULT}: ${killed}; ${got.length} messages exactly once, in order; connection ${id} kept; first message ${resumeMs} ms after the kill; ${replayed} replayed messages dropped by the client`);
}
