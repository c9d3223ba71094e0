// Interop tests: the official @microsoft/signalr JS client over Server-Sent Events and Long Polling.
//
//   RAFTPLANE_URL=http://127.0.0.1:5000 RAFTPLANE_API_KEY=key node --test transports.test.mjs
//
// interop_test.go builds and starts the server and runs this file; see README.md.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as signalR from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";

const BASE = (process.env.RAFTPLANE_URL ?? "").replace(/\/+$/, "");
const API_KEY = process.env.RAFTPLANE_API_KEY ?? "";
if (!BASE) {
  throw new Error("RAFTPLANE_URL is not set (e.g. http://127.0.0.1:5000)");
}

const HUB = "chat";
const TEST_TIMEOUT = 30_000;
const WAIT_TIMEOUT = 10_000;

async function waitFor(predicate, what, timeoutMs = WAIT_TIMEOUT) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = predicate();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function rest(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (API_KEY) headers.Authorization = `Bearer ${API_KEY}`;
  const res = await fetch(`${BASE}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, text };
}

let users = 0;

// connect builds and starts a client on the given transport and protocol; got collects handler calls.
async function connect(t, transport, protocol, { targets = ["say", "news"] } = {}) {
  const user = `tr-user-${++users}`;
  const got = [];
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(`${BASE}/hubs/${HUB}?user=${encodeURIComponent(user)}`, { transport })
    .withHubProtocol(protocol)
    .configureLogging(signalR.LogLevel.Warning)
    .build();
  for (const target of targets) {
    connection.on(target, (...args) => {
      got.push({ target, args });
    });
  }
  t.after(() => connection.stop());
  await connection.start();
  assert.equal(connection.state, signalR.HubConnectionState.Connected);
  assert.ok(connection.connectionId, "connectionId should be set after negotiate");
  return { user, connection, got };
}

const cases = [
  ["ServerSentEvents", "JSON", signalR.HttpTransportType.ServerSentEvents, () => new signalR.JsonHubProtocol()],
  ["LongPolling", "JSON", signalR.HttpTransportType.LongPolling, () => new signalR.JsonHubProtocol()],
  ["LongPolling", "MessagePack", signalR.HttpTransportType.LongPolling, () => new MessagePackHubProtocol()],
];

for (const [tname, pname, transport, protocol] of cases) {
  test(`${tname} + ${pname}: group message, REST broadcast, clean stop`, { timeout: TEST_TIMEOUT }, async (t) => {
    const group = `grp-${tname}-${pname}-${Date.now()}`;
    const a = await connect(t, transport, protocol());
    // The other client uses WebSockets: delivery crosses transports.
    const b = await connect(t, signalR.HttpTransportType.WebSockets, new signalR.JsonHubProtocol());
    await a.connection.invoke("JoinGroup", group);
    await b.connection.invoke("SendToGroup", group, "say", "hello", 42);
    await waitFor(
      () => a.got.some((c) => c.target === "say" && c.args[0] === "hello" && c.args[1] === 42),
      `say(hello, 42) on ${tname}; got ${JSON.stringify(a.got)}`,
    );
    const res = await rest("POST", `/api/v1/hubs/${HUB}`, { target: "news", arguments: [tname, { n: 1 }] });
    assert.ok(res.status >= 200 && res.status < 300, `REST broadcast: ${res.status} ${res.text}`);
    await waitFor(
      () => a.got.some((c) => c.target === "news" && c.args[0] === tname && c.args[1]?.n === 1),
      `the REST broadcast on ${tname}; got ${JSON.stringify(a.got)}`,
    );
    let closeError = "not closed";
    a.connection.onclose((err) => {
      closeError = err;
    });
    await a.connection.stop();
    assert.equal(a.connection.state, signalR.HubConnectionState.Disconnected);
    assert.equal(closeError, undefined, `stop should close without an error, got ${closeError}`);
  });
}

// Automatic reconnect is in cluster.test.mjs (every pair, on a 3-node cluster): the REST API's
// connection DELETE closes with allowReconnect=false (as ASP.NET Core's HubConnectionContext.Abort()
// does), so withAutomaticReconnect() rightly does not reconnect after it; a node's graceful shutdown
// and a crash do reconnect.

test("ServerSentEvents + MessagePack is not a pair: the client refuses before connecting", { timeout: TEST_TIMEOUT }, async () => {
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(`${BASE}/hubs/${HUB}`, { transport: signalR.HttpTransportType.ServerSentEvents })
    .withHubProtocol(new MessagePackHubProtocol())
    .configureLogging(signalR.LogLevel.None)
    .build();
  // negotiate lists ServerSentEvents with the Text transfer format only.
  await assert.rejects(connection.start(), /'ServerSentEvents' does not support Binary/);
  assert.equal(connection.state, signalR.HubConnectionState.Disconnected);
});

for (const [tname, transport] of [
  ["ServerSentEvents", signalR.HttpTransportType.ServerSentEvents],
  ["LongPolling", signalR.HttpTransportType.LongPolling],
]) {
  test(`${tname}: a server-side close (REST DELETE) reaches the client with its reason`, { timeout: TEST_TIMEOUT }, async (t) => {
    const a = await connect(t, transport, new signalR.JsonHubProtocol());
    let closed = null;
    a.connection.onclose((err) => {
      closed = err ?? new Error("closed without an error");
    });
    const res = await rest("DELETE", `/api/v1/hubs/${HUB}/connections/${encodeURIComponent(a.connection.connectionId)}`);
    assert.ok(res.status >= 200 && res.status < 300, `REST close: ${res.status} ${res.text}`);
    await waitFor(() => closed, `${tname} to close`);
    assert.match(String(closed), /closed through the REST API/);
    assert.equal(a.connection.state, signalR.HubConnectionState.Disconnected);
  });
}
