// Interop over TLS: the official @microsoft/signalr client (Node) connects to raftplane's -http port
// over https:// and wss://, with every transport, through a TCP balancer without affinity in front of a
// cluster whose nodes serve one certificate (TLS passes through the balancer), so SSE and long-polling
// requests that land on another node are forwarded over https to the one holding the connection.
//
//   RAFTPLANE_URL=https://127.0.0.1:PORT RAFTPLANE_API_KEY=key NODE_EXTRA_CA_CERTS=ca.pem node --test tls.test.mjs
//
// tls_test.go makes the CA and certificate, starts the cluster and the balancer and runs this file. The
// test CA is trusted through NODE_EXTRA_CA_CERTS only: nothing here turns verification off.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as signalR from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";
import WebSocket from "ws";

const BASE = (process.env.RAFTPLANE_URL ?? "").replace(/\/+$/, "");
const API_KEY = process.env.RAFTPLANE_API_KEY ?? "";
if (!BASE.startsWith("https://")) {
  throw new Error(`RAFTPLANE_URL must be an https:// URL, got ${JSON.stringify(BASE)}`);
}

const HUB = "tls";
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
  return { status: res.status, text: await res.text() };
}

let users = 0;

// connect starts a client on the given transport and protocol. The WebSocket constructor it is given
// (a public option of the client) records the URLs the client opens, to check they are wss://.
async function connect(t, transport, protocol, { base = BASE } = {}) {
  const user = `tls-user-${++users}`;
  const got = [];
  const sockets = [];
  class RecordingWebSocket extends WebSocket {
    constructor(url, ...rest) {
      sockets.push(String(url));
      super(url, ...rest);
    }
  }
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(`${base}/hubs/${HUB}?user=${encodeURIComponent(user)}`, { transport, WebSocket: RecordingWebSocket })
    .withHubProtocol(protocol)
    .configureLogging(signalR.LogLevel.Warning)
    .build();
  for (const target of ["say", "news"]) {
    connection.on(target, (...args) => got.push({ target, args }));
  }
  t.after(() => connection.stop());
  await connection.start();
  assert.equal(connection.state, signalR.HubConnectionState.Connected);
  return { user, connection, got, sockets };
}

const T = signalR.HttpTransportType;
const cases = [
  ["WebSockets", "JSON", T.WebSockets, () => new signalR.JsonHubProtocol(), "WebSocketTransport"],
  ["WebSockets", "MessagePack", T.WebSockets, () => new MessagePackHubProtocol(), "WebSocketTransport"],
  ["ServerSentEvents", "JSON", T.ServerSentEvents, () => new signalR.JsonHubProtocol(), "ServerSentEventsTransport"],
  ["LongPolling", "JSON", T.LongPolling, () => new signalR.JsonHubProtocol(), "LongPollingTransport"],
  ["LongPolling", "MessagePack", T.LongPolling, () => new MessagePackHubProtocol(), "LongPollingTransport"],
];

for (const [tname, pname, transport, protocol, transportClass] of cases) {
  test(`https: ${tname} + ${pname}: group message, REST broadcast, clean stop`, { timeout: TEST_TIMEOUT }, async (t) => {
    const group = `grp-${tname}-${pname}-${Date.now()}`;
    const a = await connect(t, transport, protocol());
    assert.equal(a.connection.connection.transport?.constructor.name, transportClass);
    if (transport === T.WebSockets) {
      assert.ok(a.sockets.length > 0 && a.sockets.every((u) => u.startsWith("wss://")), `WebSocket URLs: ${a.sockets}`);
    } else {
      assert.deepEqual(a.sockets, [], `no WebSocket on ${tname}`);
    }
    // The sender is on WebSockets (wss://), likely on another node.
    const b = await connect(t, T.WebSockets, new signalR.JsonHubProtocol());
    assert.ok(b.sockets.every((u) => u.startsWith("wss://")), `WebSocket URLs: ${b.sockets}`);
    await a.connection.invoke("JoinGroup", group);
    await b.connection.invoke("SendToGroup", group, "say", "hello", 42);
    await waitFor(
      () => a.got.some((c) => c.target === "say" && c.args[0] === "hello" && c.args[1] === 42),
      `say(hello, 42) on ${tname}; got ${JSON.stringify(a.got)}`,
    );
    const res = await rest("POST", `/api/v1/hubs/${HUB}`, { target: "news", arguments: [tname, { n: 1 }] });
    assert.ok(res.status >= 200 && res.status < 300, `REST broadcast over https: ${res.status} ${res.text}`);
    await waitFor(
      () => a.got.some((c) => c.target === "news" && c.args[0] === tname && c.args[1]?.n === 1),
      `the REST broadcast on ${tname}; got ${JSON.stringify(a.got)}`,
    );
    let closeError = "not closed";
    a.connection.onclose((err) => {
      closeError = err;
    });
    await a.connection.stop();
    assert.equal(closeError, undefined, `stop should close without an error, got ${closeError}`);
  });
}

test("plain http:// to the TLS port is refused", { timeout: TEST_TIMEOUT }, async () => {
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(`${BASE.replace(/^https:/, "http:")}/hubs/${HUB}`)
    .configureLogging(signalR.LogLevel.None)
    .build();
  await assert.rejects(connection.start());
  assert.equal(connection.state, signalR.HubConnectionState.Disconnected);
});
