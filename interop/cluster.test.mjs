// Interop tests: the official @microsoft/signalr client in Node on every transport x protocol pair it
// supports, against a three-node raftplane cluster of real processes, with automatic reconnect when
// the client's node goes away.
//
// reconnect_test.go (TestOfficialJSClient_ClusterReconnect) starts the nodes, a failover proxy (every
// connection to one node, the next one when it is down) and a control endpoint, and runs this file:
//
//   RAFTPLANE_NODES=url1,url2,url3 RAFTPLANE_PROXY=url RAFTPLANE_CONTROL=url RAFTPLANE_API_KEY=key \
//     node --test cluster.test.mjs
//
// For each pair, with L the leader and F1, F2 the followers:
//   1. a (through the proxy, on F1) joins a group; b (on L, same pair) sends to it; a REST broadcast is
//      posted to F2; a receives both.
//   2. c (on F2, withAutomaticReconnect) is closed through the REST API (DELETE on L): the server's
//      Close has no allowReconnect, so c closes with the reason and does not reconnect (as ASP.NET Core
//      does for HubConnectionContext.Abort()).
//   3. The proxy is pointed at F2 and F1 gets SIGTERM: the node sends Close with allowReconnect, a
//      reconnects through the proxy to F2 with a new connection id, joins again and receives again.
//      F1 is restarted.
//   4. The proxy is pointed at F1 and F2 gets kill -9: a's transport breaks, a reconnects to F1 and
//      receives again. F2 is restarted.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as signalR from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";

const NODES = (process.env.RAFTPLANE_NODES ?? "").split(",").filter(Boolean).map((u) => u.replace(/\/+$/, ""));
const PROXY = (process.env.RAFTPLANE_PROXY ?? "").replace(/\/+$/, "");
const CONTROL = (process.env.RAFTPLANE_CONTROL ?? "").replace(/\/+$/, "");
const API_KEY = process.env.RAFTPLANE_API_KEY ?? "";
if (NODES.length !== 3 || !PROXY || !CONTROL) {
  throw new Error("RAFTPLANE_NODES (three URLs), RAFTPLANE_PROXY and RAFTPLANE_CONTROL must be set; see reconnect_test.go");
}

const HUB = "cluster";
const TEST_TIMEOUT = 90_000; // per pair: two node stops and restarts
const WAIT_TIMEOUT = 15_000; // for one expected message or event
// The delays of the client's default policy (withAutomaticReconnect() with no argument), wrapped to
// count the attempts.
const DEFAULT_DELAYS = [0, 2000, 10000, 30000];

// A node stopping gracefully turns HTTP keep-alives off, then sends Close with allowReconnect, so the
// client's first attempt (delay 0) usually does not reuse a pooled connection to it (which would get
// 503 "server is shutting down") and lands on a live node.

const T = signalR.HttpTransportType;
const PAIRS = [
  { transport: "WebSockets", protocol: "JSON", type: T.WebSockets, make: () => new signalR.JsonHubProtocol() },
  { transport: "WebSockets", protocol: "MessagePack", type: T.WebSockets, make: () => new MessagePackHubProtocol() },
  { transport: "ServerSentEvents", protocol: "JSON", type: T.ServerSentEvents, make: () => new signalR.JsonHubProtocol() },
  { transport: "LongPolling", protocol: "JSON", type: T.LongPolling, make: () => new signalR.JsonHubProtocol() },
  { transport: "LongPolling", protocol: "MessagePack", type: T.LongPolling, make: () => new MessagePackHubProtocol() },
];
// ServerSentEvents x MessagePack is not a pair: SSE carries text only, and the client does not try it.

async function waitFor(predicate, what, timeoutMs = WAIT_TIMEOUT) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await predicate();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function rest(base, method, path, body) {
  const headers = { Authorization: `Bearer ${API_KEY}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, text };
}

// control asks the Go test to act on node i (see clusterControl in reconnect_test.go).
async function control(op, i, signal) {
  const q = new URLSearchParams(i === undefined ? {} : { node: String(i) });
  if (signal) q.set("signal", signal);
  const res = await fetch(`${CONTROL}/${op}?${q}`, { method: "POST" });
  if (res.status !== 204) throw new Error(`control ${op} node ${i} ${signal ?? ""}: ${res.status} ${await res.text()}`);
}

// roles reads the cluster's members: ids[i] is the node id of NODES[i]; leader and followers are indexes.
async function roles() {
  const res = await rest(NODES[0], "GET", "/api/v1/cluster");
  assert.equal(res.status, 200, `GET /api/v1/cluster: ${res.text}`);
  const { members } = JSON.parse(res.text);
  const ids = NODES.map((u) => members.find((m) => `http://${m.http_addr}` === u)?.id);
  assert.ok(ids.every(Boolean), `every node in ${JSON.stringify(members)}`);
  const leader = ids.indexOf(members.find((m) => m.leader).id);
  return { ids, leader, followers: [0, 1, 2].filter((i) => i !== leader) };
}

let users = 0;

// connect starts a client of the pair on base. got: handler calls; ev: reconnect events and retry
// attempts (when reconnect is set).
async function connect(t, base, pair, { reconnect = false } = {}) {
  const user = `cl-user-${++users}`;
  const got = [];
  const ev = { reconnecting: [], reconnected: [], closed: [], retries: [] };
  let builder = new signalR.HubConnectionBuilder()
    .withUrl(`${base}/hubs/${HUB}?user=${encodeURIComponent(user)}`, { transport: pair.type })
    .withHubProtocol(pair.make())
    // Quiet: the expected disconnects would log errors; the test records every event in ev and
    // prints them when an assertion fails.
    .configureLogging(signalR.LogLevel.Critical);
  if (reconnect) {
    builder = builder.withAutomaticReconnect({
      nextRetryDelayInMilliseconds(ctx) {
        ev.retries.push({ attempt: ctx.previousRetryCount, reason: String(ctx.retryReason) });
        return DEFAULT_DELAYS[ctx.previousRetryCount] ?? null;
      },
    });
  }
  const connection = builder.build();
  for (const target of ["say", "news"]) {
    connection.on(target, (...args) => {
      got.push({ target, args }); // no return value: the server expects none
    });
  }
  connection.onreconnecting((err) => ev.reconnecting.push(err));
  connection.onreconnected((id) => ev.reconnected.push(id));
  connection.onclose((err) => ev.closed.push(err ?? null));
  t.after(() => connection.stop());
  await connection.start();
  assert.equal(connection.state, signalR.HubConnectionState.Connected);
  return { user, connection, got, ev };
}

// onNode waits until the cluster places c's connection on node i.
async function onNode(c, i, ids) {
  const id = c.connection.connectionId;
  let last;
  await waitFor(async () => {
    last = await rest(NODES[i], "GET", `/api/v1/hubs/${HUB}/connections/${encodeURIComponent(id)}`);
    return last.status === 200 && JSON.parse(last.text).node === ids[i];
  }, `connection ${id} on node ${i} (${ids[i]}); last answer ${last?.status} ${last?.text}`);
}

let seq = 0;

// roundTrip: a joins group, b sends to it, a REST broadcast is posted to restBase; a gets both.
async function roundTrip(label, a, b, restBase, group) {
  const n = ++seq;
  await a.connection.invoke("JoinGroup", group);
  await b.connection.invoke("SendToGroup", group, "say", label, n);
  await waitFor(
    () => a.got.some((c) => c.target === "say" && c.args[0] === label && c.args[1] === n),
    `${label}: the group send; got ${JSON.stringify(a.got)}`,
  );
  const res = await rest(restBase, "POST", `/api/v1/hubs/${HUB}`, { target: "news", arguments: [label, { n }] });
  assert.ok(res.status >= 200 && res.status < 300, `${label}: REST broadcast: ${res.status} ${res.text}`);
  await waitFor(
    () => a.got.some((c) => c.target === "news" && c.args[0] === label && c.args[1]?.n === n),
    `${label}: the REST broadcast; got ${JSON.stringify(a.got)}`,
  );
}

// reconnected waits for a's k-th reconnect and checks the events that led to it.
async function reconnected(a, k, oldId, label) {
  await waitFor(() => a.ev.reconnected.length >= k, `${label}: onreconnected #${k} (events ${describe(a.ev)})`);
  assert.equal(a.ev.reconnecting.length, k, `${label}: onreconnecting fired ${a.ev.reconnecting.length} times; ${describe(a.ev)}`);
  assert.equal(a.ev.closed.length, 0, `${label}: onclose fired: ${describe(a.ev)}`);
  assert.equal(a.connection.state, signalR.HubConnectionState.Connected);
  assert.ok(a.connection.connectionId && a.connection.connectionId !== oldId, `${label}: new connection id, was ${oldId}`);
  assert.equal(a.ev.reconnected[k - 1], a.connection.connectionId);
}

function describe(ev) {
  return JSON.stringify({
    reconnecting: ev.reconnecting.map(String),
    reconnected: ev.reconnected,
    closed: ev.closed.map(String),
    retries: ev.retries,
  });
}

for (const pair of PAIRS) {
  const name = `${pair.transport} x ${pair.protocol}`;
  test(`${name}, 3 nodes: group send and REST broadcast across nodes, REST close, reconnect after SIGTERM and kill -9`,
    { timeout: TEST_TIMEOUT }, async (t) => {
      await control("heal"); // every node up, even after an earlier pair failed half-way
      const { ids, leader: L, followers: [F1, F2] } = await roles();
      const group = `grp-${pair.transport}-${pair.protocol}`;

      // 1. a on F1 through the proxy, b on L, the REST broadcast on F2.
      await control("route", F1);
      const a = await connect(t, PROXY, pair, { reconnect: true });
      const b = await connect(t, NODES[L], pair);
      await onNode(a, F1, ids);
      await roundTrip(`${name} before`, a, b, NODES[F2], group);

      // 2. A REST close is final, even with automatic reconnect.
      const c = await connect(t, NODES[F2], pair, { reconnect: true });
      const reason = `closed by the ${pair.transport} test`;
      const del = await rest(NODES[L], "DELETE",
        `/api/v1/hubs/${HUB}/connections/${encodeURIComponent(c.connection.connectionId)}?reason=${encodeURIComponent(reason)}`);
      assert.ok(del.status >= 200 && del.status < 300, `REST close: ${del.status} ${del.text}`);
      await waitFor(() => c.ev.closed.length > 0, `c to close (${describe(c.ev)})`);
      assert.match(String(c.ev.closed[0]), new RegExp(reason));
      assert.equal(c.ev.reconnecting.length, 0, `a REST close must not reconnect: ${describe(c.ev)}`);
      assert.equal(c.connection.state, signalR.HubConnectionState.Disconnected);

      // 3. SIGTERM: Close with allowReconnect, a moves to F2.
      let oldId = a.connection.connectionId;
      await control("route", F2);
      await control("stop", F1, "term");
      await reconnected(a, 1, oldId, `${name} after SIGTERM`);
      assert.match(String(a.ev.reconnecting[0]), /Server is shutting down/, describe(a.ev));
      const termRetries = a.ev.retries.length;
      // Usually the first attempt lands on a live node (the draining node turns keep-alives off), but a
      // POST negotiate can still race the closing of an idle pooled connection ("fetch failed"): only
      // reported, the reconnect itself is what must work.
      if (termRetries !== 1) {
        t.diagnostic(`${name}: ${termRetries} attempts after SIGTERM: ${describe(a.ev)}`);
      }
      await onNode(a, F2, ids);
      await roundTrip(`${name} after SIGTERM`, a, b, NODES[L], group);
      await control("start", F1);

      // 4. kill -9: the transport breaks, a moves to F1.
      oldId = a.connection.connectionId;
      await control("route", F1);
      await control("stop", F2, "kill");
      await reconnected(a, 2, oldId, `${name} after kill -9`);
      await onNode(a, F1, ids);
      await roundTrip(`${name} after kill -9`, a, b, NODES[L], group);
      console.log(`${name}: reconnect attempts ${JSON.stringify(a.ev.retries)}; errors ${JSON.stringify(a.ev.reconnecting.map(String))}`);
      await control("start", F2);
    });
}
