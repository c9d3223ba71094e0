// The official client against three raftplane nodes whose -upstream is the Node example
// (examples/upstream-node). Run by upstream_test.go:
//
//   RAFTPLANE_URL=<balancer> RAFTPLANE_NODES=<node urls,> RAFTPLANE_CONTROL=<url> RAFTPLANE_API_KEY=<key>
//   RAFTPLANE_HUB=<hub> UPSTREAM_URL=<the example> UPSTREAM_TIMEOUT=<-upstream-timeout> node --test upstream.test.mjs
//
// RAFTPLANE_CONTROL (POST) kills, stops and restarts nodes and the upstream: see upstream_test.go.
// The tests run in order and share the cluster: the last ones run with a node gone for good.
import { test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import * as signalR from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";

const BASE = (process.env.RAFTPLANE_URL ?? "").replace(/\/+$/, "");
const NODES = (process.env.RAFTPLANE_NODES ?? "").split(",").filter(Boolean);
const CONTROL = process.env.RAFTPLANE_CONTROL ?? "";
const KEY = process.env.RAFTPLANE_API_KEY ?? "";
const HUB = process.env.RAFTPLANE_HUB ?? "";
const UPSTREAM = process.env.UPSTREAM_URL ?? "";
const TIMEOUT = process.env.UPSTREAM_TIMEOUT ?? "";
if (!BASE || NODES.length !== 3 || !CONTROL || !KEY || !HUB || !UPSTREAM || !TIMEOUT) {
  throw new Error("RAFTPLANE_URL, RAFTPLANE_NODES (3), RAFTPLANE_CONTROL, RAFTPLANE_API_KEY, RAFTPLANE_HUB, UPSTREAM_URL and UPSTREAM_TIMEOUT must be set");
}
const down = new Set(); // indexes of nodes killed for good

function connect(url, user, { msgpack = false, stateful = false, query = "" } = {}) {
  let b = new signalR.HubConnectionBuilder()
    .withUrl(`${url}/hubs/${HUB}?user=${encodeURIComponent(user)}${query}`, { transport: signalR.HttpTransportType.WebSockets })
    .configureLogging(signalR.LogLevel.None);
  if (msgpack) b = b.withHubProtocol(new MessagePackHubProtocol());
  if (stateful) b = b.withStatefulReconnect().withAutomaticReconnect();
  return b.build();
}

async function control(op, params = {}) {
  const r = await fetch(`${CONTROL}/${op}?${new URLSearchParams(params)}`, { method: "POST" });
  const text = await r.text();
  assert.equal(r.status, 200, `control ${op} ${JSON.stringify(params)}: ${text}`);
  return text;
}

async function upstreamRecord() {
  const r = await fetch(`${UPSTREAM}/events`, { headers: { Authorization: `Bearer ${KEY}` } });
  assert.equal(r.status, 200, await r.clone().text());
  return r.json();
}

async function until(what, cond, ms = 60_000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// eventsOf returns the upstream's connected and disconnected records of a connection.
async function eventsOf(id) {
  const rec = await upstreamRecord();
  const of = rec.connections.filter((e) => e.connectionId === id);
  return { connected: of.filter((e) => e.event === "connected"), disconnected: of.filter((e) => e.event === "disconnected") };
}

// fence opens and closes a connection on a live node and waits for its disconnected event. The
// leader delivers disconnected events in log order, so once the fence's is recorded every close
// before it has been delivered: a duplicate would be in the record by then.
async function fence() {
  const at = NODES.find((_, i) => !down.has(i));
  const f = connect(at, "fence");
  await f.start();
  const id = f.connectionId;
  await f.stop();
  await until(`the fence's disconnected event (${id})`, async () => (await eventsOf(id)).disconnected.length > 0);
}

// onceEach checks that each connection has one connected and one disconnected event, and returns
// the disconnected ones.
async function onceEach(ids) {
  const out = [];
  for (const id of ids) {
    const ev = await eventsOf(id);
    assert.equal(ev.connected.length, 1, `connected events of ${id}: ${JSON.stringify(ev.connected)}`);
    assert.equal(ev.disconnected.length, 1, `disconnected events of ${id}: ${JSON.stringify(ev.disconnected)}`);
    assert.ok(ev.disconnected[0].eventId, "a disconnected event has an id");
    out.push(ev.disconnected[0]);
  }
  return out;
}

for (const msgpack of [false, true]) {
  const proto = msgpack ? "MessagePack" : "JSON";
  test(`upstream methods on 3 nodes, ${proto}: results, errors, sends in one order everywhere`, { timeout: 90_000 }, async () => {
    const users = ["alice", "bob", "carol"];
    const conns = users.map((u, i) => connect(NODES[i], u, { msgpack, query: `&room=r${i}` }));
    const got = conns.map(() => []);
    conns.forEach((c, i) => c.on("broadcast2", (who, text) => got[i].push(`${who}|${text}`)));
    try {
      await Promise.all(conns.map((c) => c.start()));
      const [alice, bob, carol] = conns;
      assert.equal(await alice.invoke("Echo", "hi"), "hi");
      assert.deepEqual(await bob.invoke("Echo", { a: [1, 2.5, "x", null, true] }), { a: [1, 2.5, "x", null, true] });
      assert.equal(await carol.invoke("Add", 2, 3), 5);
      assert.equal(await carol.invoke("add", 0.5, -2), -1.5, "method names are case-insensitive");
      const who = await bob.invoke("Whoami");
      assert.equal(who.user, "bob");
      assert.equal(who.connectionId, bob.connectionId);
      assert.equal(who.hub, HUB);
      assert.equal(who.query, "?room=r1&user=bob", "X-ASRS-Client-Query, without the credentials");
      await assert.rejects(alice.invoke("Fail"), /Fail always fails/);
      await assert.rejects(alice.invoke("Add", "x", 1), /Add takes 2 numbers/);
      await assert.rejects(alice.invoke("NoSuchMethod"), /Unknown method 'NoSuchMethod'/);
      // Fire-and-forget: the upstream gets it without an invocation id.
      await alice.send("Echo", "ff");
      await until("the fire-and-forget call at the upstream", async () =>
        (await upstreamRecord()).invocations.some((v) => v.connectionId === alice.connectionId && v.method === "Echo" && v.invocationId === null));
      // Broadcast2 sends through the REST API; fired without waiting, from two nodes: every client
      // sees every send in the order of their cursors.
      const N = 10;
      const calls = [];
      for (let i = 0; i < N; i++) {
        calls.push(alice.invoke("Broadcast2", `a${i}`).then((cur) => ({ cur, m: `alice|a${i}` })));
        calls.push(carol.invoke("Broadcast2", `c${i}`).then((cur) => ({ cur, m: `carol|c${i}` })));
      }
      const sent = await Promise.all(calls);
      for (const { cur } of sent) assert.match(cur, /^[^:]+:\d+:\d+$/, "Broadcast2 returns the send's cursor");
      const key = (c) => { const [, i, o] = c.split(":"); return BigInt(i) * 4294967296n + BigInt(o); };
      const want = sent.slice().sort((x, y) => (key(x.cur) < key(y.cur) ? -1 : 1)).map((s) => s.m);
      await until("every client to get every send", () => got.every((g) => g.length >= 2 * N));
      for (let i = 0; i < 3; i++) assert.deepEqual(got[i], want, `client on node ${i}`);
      // Each caller's sends keep its order.
      assert.deepEqual(want.filter((m) => m.startsWith("alice")), Array.from({ length: N }, (_, i) => `alice|a${i}`));
    } finally {
      await Promise.all(conns.map((c) => c.stop()));
    }
  });
}

test("the signature: the example refuses a forged or missing one, and takes a right one", async () => {
  const post = (headers) => fetch(`${UPSTREAM}/api/${HUB}/connections/connected`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-ASRS-Connection-Id": "forged-1", "X-ASRS-Hub": HUB,
      "X-ASRS-Category": "connections", "X-ASRS-Event": "connected", "X-Raftplane-Event-Id": `forged-${Date.now()}`, ...headers },
    body: JSON.stringify({ type: 10 }),
  });
  const sign = (key, id) => "sha256=" + crypto.createHmac("sha256", key).update(id).digest("hex").toUpperCase();
  for (const [why, sig] of [["none", undefined], ["another key", sign(KEY + "x", "forged-1")],
    ["another connection", sign(KEY, "forged-2")], ["not hex", "sha256=zz"]]) {
    const r = await post(sig === undefined ? {} : { "X-ASRS-Signature": sig });
    assert.equal(r.status, 401, `${why}: ${await r.text()}`);
  }
  // Azure sends one per access key, comma-separated, and any may match; case does not matter.
  const r = await post({ "X-ASRS-Signature": `sha256=${"0".repeat(64)}, ${sign(KEY, "forged-1").toLowerCase()}` });
  assert.equal(r.status, 200, await r.text());
  const ev = await eventsOf("forged-1");
  assert.equal(ev.connected.length, 1);
});

test("a connection the upstream refuses fails start() with the upstream's text", async () => {
  for (const url of [NODES[0], BASE]) {
    const c = connect(url, "banned");
    await assert.rejects(c.start(), /Connection refused: banned users may not connect/);
  }
  // Its close is in the log, but the upstream that refused it gets no disconnected event for it.
  await fence();
  const rec = await upstreamRecord();
  assert.deepEqual(rec.connections.filter((e) => e.userId === "banned"), []);
});

test("connected and disconnected once, across a stateful reconnect after kill -9 of the node", { timeout: 120_000 }, async () => {
  const a = connect(BASE, "dora", { stateful: true });
  let reconnecting = 0;
  a.onreconnecting(() => reconnecting++);
  await a.start();
  const id = a.connectionId;
  assert.equal(await a.invoke("Echo", 1), 1);
  assert.equal((await eventsOf(id)).connected.length, 1, "connected is sent before the handshake is answered");
  const killed = Number(await control("kill", { conn: id }));
  // The invocation waits for the reconnect, which lands on another node and continues the
  // connection: no new connected event (it would be sent before the reconnect is answered).
  assert.equal(await a.invoke("Echo", 2), 2);
  assert.equal(a.connectionId, id, "the connection continued");
  assert.equal(reconnecting, 0, "the automatic reconnect did not run: the stateful reconnect did it");
  assert.notEqual(Number(await control("holder", { conn: id })), killed);
  assert.equal((await eventsOf(id)).connected.length, 1, "no connected event for the resume");
  await control("restart", { node: killed });
  await a.stop();
  await fence();
  const [d] = await onceEach([id]);
  assert.equal(d.error, null, "the client closed it: no error");
});

test("connected and disconnected once, across a graceful stop (SIGTERM) of the node", { timeout: 120_000 }, async () => {
  const b = connect(BASE, "emil", { stateful: true });
  await b.start();
  const bid = b.connectionId;
  // A plain client on the same node: the stop closes it.
  const at = Number(await control("holder", { conn: bid }));
  const plain = connect(NODES[at], "fred");
  const closed = new Promise((res) => plain.onclose(res));
  await plain.start();
  const pid = plain.connectionId;
  assert.equal(Number(await control("term", { conn: bid })), at);
  await closed;
  assert.equal(await b.invoke("Echo", "still here"), "still here");
  assert.equal(b.connectionId, bid);
  await control("restart", { node: at });
  await b.stop();
  // The plain client's connection ends when no one resumes it within -disconnect-timeout: the
  // leader reaps it (its node gone) or its restarted node does.
  await until(`the disconnected event of ${pid}`, async () => (await eventsOf(pid)).disconnected.length > 0, 90_000);
  await fence();
  const [db, dp] = await onceEach([bid, pid]);
  assert.equal(db.error, null);
  assert.ok(dp.error, "the plain connection was not closed by its client: the event says why");
  console.log(`graceful stop: ${bid} continued elsewhere; ${pid} ended with "${dp.error}"`);
});

test("connected and disconnected once, for a connection reaped after its node died for good", { timeout: 120_000 }, async () => {
  const c = connect(NODES[1], "gus");
  const closed = new Promise((res) => c.onclose(res));
  await c.start();
  const id = c.connectionId;
  const killed = Number(await control("kill", { conn: id }));
  down.add(killed);
  await closed; // the client stays stopped: nothing resumes the connection
  await until(`the disconnected event of ${id}`, async () => (await eventsOf(id)).disconnected.length > 0, 90_000);
  await fence();
  const [d] = await onceEach([id]);
  assert.match(d.error, /gone/, "the leader reaped it: its node is gone");
  console.log(`reaped: ${id} ended with "${d.error}"`);
});

test("a slow upstream times its caller out, and another connection on the node goes on", { timeout: 60_000 }, async () => {
  const at = NODES.find((_, i) => !down.has(i));
  const slow = connect(at, "hank"), other = connect(at, "ida");
  const order = [];
  other.on("ping", () => order.push("ping"));
  await Promise.all([slow.start(), other.start()]);
  try {
    const pending = slow.invoke("Slow", 60_000).then(
      () => order.push("slow answered"),
      (e) => { order.push("slow failed"); return e; });
    // Once the upstream holds the call, the other connection's built-ins complete before it ends.
    await until("the Slow call at the upstream", async () =>
      (await upstreamRecord()).invocations.some((v) => v.connectionId === slow.connectionId && v.method === "Slow"));
    await other.invoke("JoinGroup", "g");
    await other.invoke("SendToGroup", "g", "ping");
    await until("the ping", () => order.includes("ping"));
    order.push("other done");
    const err = await pending;
    assert.deepEqual(order, ["ping", "other done", "slow failed"]);
    assert.match(String(err), new RegExp(`Invocation of 'Slow' failed: the upstream did not answer within ${TIMEOUT}\\.`));
    // The caller's connection is still good.
    assert.equal(await slow.invoke("Echo", "after"), "after");
  } finally {
    await Promise.all([slow.stop(), other.stop()]);
  }
});

test("an upstream that is down: a clear error at once, connections refused, disconnected delivered once it is back", { timeout: 120_000 }, async () => {
  const at = NODES.find((_, i) => !down.has(i));
  const u = connect(at, "jack");
  await u.start();
  const id = u.connectionId;
  await control("upstream/stop");
  try {
    await assert.rejects(u.invoke("Echo", 1), /Invocation of 'Echo' failed: the upstream is unreachable\./);
    await u.invoke("JoinGroup", "still-works"); // built-ins do not need the upstream
    await assert.rejects(connect(at, "kate").start(), /Connection refused: the upstream is unreachable\./);
    await u.stop(); // its disconnected event waits for the upstream
  } finally {
    await control("upstream/start");
  }
  // The restarted upstream's record is new: the event arrives there, once.
  await until(`the disconnected event of ${id} after the upstream is back`, async () => (await eventsOf(id)).disconnected.length > 0, 60_000);
  await fence();
  const ev = await eventsOf(id);
  assert.equal(ev.disconnected.length, 1);
  assert.equal(ev.connected.length, 0, "connected went to the upstream's previous run");
});
