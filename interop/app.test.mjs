// The official client against three nodes of the chat example (examples/chat: a Go program embedding
// raftplane, whose "chat" hub has methods of its own). Run by app_test.go:
//
//   RAFTPLANE_URL=<balancer> RAFTPLANE_NODES=<node urls,> RAFTPLANE_CONTROL=<url> node --test app.test.mjs
//
// RAFTPLANE_CONTROL/fault?conn=<id> makes the Go test kill -9 the node holding the connection; it
// answers with that node's index in RAFTPLANE_NODES.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as signalR from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";

const BASE = (process.env.RAFTPLANE_URL ?? "").replace(/\/+$/, "");
const NODES = (process.env.RAFTPLANE_NODES ?? "").split(",").filter(Boolean);
const CONTROL = process.env.RAFTPLANE_CONTROL ?? "";
if (!BASE || NODES.length !== 3 || !CONTROL) throw new Error("RAFTPLANE_URL, RAFTPLANE_NODES (3) and RAFTPLANE_CONTROL must be set");

function connect(url, user, { msgpack = false, stateful = false } = {}) {
  let b = new signalR.HubConnectionBuilder()
    .withUrl(`${url}/hubs/chat?user=${encodeURIComponent(user)}`)
    .configureLogging(signalR.LogLevel.Warning);
  if (msgpack) b = b.withHubProtocol(new MessagePackHubProtocol());
  if (stateful) b = b.withStatefulReconnect();
  return b.build();
}

// collect records the "message" calls a connection gets.
function collect(conn) {
  const got = [];
  conn.on("message", (room, who, text) => { got.push(`${room}|${who}|${text}`); });
  return got;
}

async function until(what, cond, ms = 30_000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

for (const msgpack of [false, true]) {
  const proto = msgpack ? "MessagePack" : "JSON";
  test(`Go methods on 3 nodes, ${proto}: results, errors, sends in one order everywhere`, { timeout: 90_000 }, async () => {
    const room = msgpack ? "mp" : "js";
    const [alice, bob, carol] = ["alice", "bob", "carol"].map((u, i) => connect(NODES[i], u, { msgpack }));
    alice.on("message", () => {}); // she is in the room too
    const atBob = collect(bob), atCarol = collect(carol);
    try {
      await Promise.all([alice.start(), bob.start(), carol.start()]);
      for (const c of [alice, bob, carol]) assert.equal(await c.invoke("Join", room), `room:${room}`);
      assert.equal(await bob.invoke("Whoami"), "bob");
      // Fired without waiting: the client's order is the log's.
      const N = 30;
      const sent = [];
      for (let i = 0; i < N; i++) sent.push(alice.invoke("Send", room, `m${i}`));
      for (const r of await Promise.all(sent)) assert.equal(r, undefined); // a method without a result
      const want = Array.from({ length: N }, (_, i) => `${room}|alice|m${i}`);
      await until("bob and carol to get every message", () => atBob.length >= N && atCarol.length >= N);
      assert.deepEqual(atBob, want);
      assert.deepEqual(atCarol, want);
      // Application errors, the argument binder's, and the closed built-ins.
      await assert.rejects(alice.invoke("Send", room, "   "), /empty message/);
      await assert.rejects(alice.invoke("Send", room), /the method takes 2 argument\(s\), got 1/);
      await assert.rejects(alice.invoke("Join", "Not A Room"), /room names are/);
      await assert.rejects(alice.invoke("Broadcast", "x", 1), /Method 'Broadcast' is not available to clients/);
      await assert.rejects(alice.invoke("NoSuchMethod"), /Unknown hub method 'NoSuchMethod'/);
    } finally {
      await Promise.all([alice.stop(), bob.stop(), carol.stop()]);
    }
  });
}

test("OnConnected refuses an anonymous client with the application's message", async () => {
  const anon = new signalR.HubConnectionBuilder().withUrl(`${NODES[2]}/hubs/chat`).configureLogging(signalR.LogLevel.None).build();
  await assert.rejects(anon.start(), /sign in first/);
});

test("a method resent after its node is killed is applied once, in order", { timeout: 120_000 }, async () => {
  const dave = connect(BASE, "dave", { stateful: true });
  const listeners = [connect(NODES[0], "l0"), connect(NODES[1], "l1"), connect(NODES[2], "l2")];
  const got = listeners.map(collect);
  let reconnects = 0;
  dave.onreconnecting(() => reconnects++);
  try {
    await dave.start();
    await Promise.all(listeners.map((l) => l.start()));
    await dave.invoke("Join", "resend");
    await Promise.all(listeners.map((l) => l.invoke("Join", "resend")));
    const N = 60;
    const calls = [];
    let killed = -1;
    for (let i = 0; i < N; i++) {
      calls.push(dave.invoke("Send", "resend", `r${i}`));
      if (i === 20) {
        // Kill dave's node while its invocations are in flight: some were applied and not yet
        // acknowledged (the client resends them), some not yet sent.
        const r = await fetch(`${CONTROL}/fault?conn=${encodeURIComponent(dave.connectionId)}`);
        assert.equal(r.status, 200, await r.clone().text());
        killed = Number(await r.text());
      }
    }
    for (const r of await Promise.all(calls)) assert.equal(r, undefined);
    assert.equal(reconnects, 0, "the stateful reconnect continued the connection without an automatic reconnect");
    const want = Array.from({ length: N }, (_, i) => `resend|dave|r${i}`);
    for (let i = 0; i < 3; i++) {
      if (i === killed) continue;
      await until(`listener ${i} to get ${N} messages`, () => got[i].length >= N);
      await new Promise((r) => setTimeout(r, 300)); // a duplicate would follow closely
      assert.deepEqual(got[i], want, `listener on node ${i}`);
    }
  } finally {
    await Promise.all([dave, ...listeners].map((c) => c.stop().catch(() => {})));
  }
});
