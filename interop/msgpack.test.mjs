// Interop tests: the official @microsoft/signalr client with the MessagePack hub protocol
// (@microsoft/signalr-protocol-msgpack) against a running raftplane server, next to a JSON client.
//
//   RAFTPLANE_URL=http://127.0.0.1:5000 [RAFTPLANE_API_KEY=key] node --test msgpack.test.mjs
//
// interop_test.go builds and starts the server and runs this file with basic.test.mjs; see README.md.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as signalR from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";

const BASE = (process.env.RAFTPLANE_URL ?? "").replace(/\/+$/, "");
const API_KEY = process.env.RAFTPLANE_API_KEY ?? "";
if (!BASE) {
  throw new Error("RAFTPLANE_URL is not set (e.g. http://127.0.0.1:5000)");
}

const HUB = "msgpack"; // its own hub: node --test runs basic.test.mjs at the same time
const TEST_TIMEOUT = 30_000;
const WAIT_TIMEOUT = 10_000;

// The stock protocols, recording the "cursor" header of every Invocation they parse (handlers only
// get the arguments), as basic.test.mjs does for JSON.
function recording(Base) {
  return class extends Base {
    constructor(wire) {
      super();
      this.wire = wire;
    }
    parseMessages(input, logger) {
      const messages = super.parseMessages(input, logger);
      for (const m of messages) {
        if (m.type === signalR.MessageType.Invocation) {
          this.wire.push({ target: m.target, arguments: m.arguments, cursor: m.headers?.cursor, binary: input instanceof ArrayBuffer });
        }
      }
      return messages;
    }
  };
}
const RecordingMsgPack = recording(MessagePackHubProtocol);
const RecordingJson = recording(signalR.JsonHubProtocol);

async function waitFor(predicate, what, timeoutMs = WAIT_TIMEOUT) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = predicate();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function isDeepEqual(a, b) {
  try {
    assert.deepStrictEqual(a, b);
    return true;
  } catch {
    return false;
  }
}

function assertCursor(cursor) {
  assert.equal(typeof cursor, "string", `cursor should be a string, got ${JSON.stringify(cursor)}`);
  assert.match(cursor, /^[^:]+:\d+:\d+$/, `cursor ${cursor} is not <epoch>:<index>:<offset>`);
}

// A connected client over WebSockets with the given protocol ("messagepack" or "json").
async function connect(t, user, protocol, targets) {
  const wire = [];
  const got = [];
  const hubProtocol = protocol === "messagepack" ? new RecordingMsgPack(wire) : new RecordingJson(wire);
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(`${BASE}/hubs/${HUB}?user=${encodeURIComponent(user)}`, {
      transport: signalR.HttpTransportType.WebSockets,
    })
    .withHubProtocol(hubProtocol)
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
  assert.equal(hubProtocol.name, protocol);
  return {
    user,
    connection,
    wire,
    invoke: (...a) => connection.invoke(...a),
    // Waits until target(...args) reached a handler and returns the cursor header it carried.
    async expect(target, args) {
      await waitFor(
        () => got.some((c) => c.target === target && isDeepEqual(c.args, args)),
        `${user} (${protocol}) to receive ${target}(${JSON.stringify(args).slice(1, -1)}); got ${JSON.stringify(got)}`,
      );
      const m = wire.find((w) => w.target === target && isDeepEqual(w.arguments, args));
      assert.ok(m, `${user}: ${target} reached the handler but not through the protocol`);
      assert.equal(m.binary, protocol === "messagepack", `${user}: ${target} arrived in the wrong frame type`);
      return m.cursor;
    },
  };
}

async function restPost(path, body) {
  const headers = { "Content-Type": "application/json" };
  if (API_KEY) headers.Authorization = `Bearer ${API_KEY}`;
  const res = await fetch(`${BASE}${path}`, { method: "POST", headers, body: JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, text, json: () => JSON.parse(text) };
}

test("m1: MessagePack and JSON clients in one group receive each other's SendToGroup with the cursor", { timeout: TEST_TIMEOUT }, async (t) => {
  const mp = await connect(t, "mia", "messagepack", ["say"]);
  const js = await connect(t, "jay", "json", ["say"]);
  await mp.invoke("JoinGroup", "room");
  await js.invoke("JoinGroup", "room");

  const fromJSON = await js.invoke("SendToGroup", "room", "say", "from-json", 42, { n: 1, list: [1.5, null, true] });
  assertCursor(fromJSON);
  assert.equal(await mp.expect("say", ["from-json", 42, { n: 1, list: [1.5, null, true] }]), fromJSON, "mia: cursor header");
  assert.equal(await js.expect("say", ["from-json", 42, { n: 1, list: [1.5, null, true] }]), fromJSON, "jay: cursor header");

  const fromMsgPack = await mp.invoke("SendToGroup", "room", "say", "from-msgpack", -7, { b: "x", a: [] });
  assertCursor(fromMsgPack); // the invoke result (a msgpack Completion) is the cursor string
  assert.notEqual(fromMsgPack, fromJSON);
  assert.equal(await js.expect("say", ["from-msgpack", -7, { b: "x", a: [] }]), fromMsgPack, "jay: cursor header");
  assert.equal(await mp.expect("say", ["from-msgpack", -7, { b: "x", a: [] }]), fromMsgPack, "mia: cursor header");
});

test("m2: a REST broadcast reaches a MessagePack client with the response's cursor", { timeout: TEST_TIMEOUT }, async (t) => {
  const mp = await connect(t, "mia", "messagepack", ["news"]);
  const res = await restPost(`/api/v1/hubs/${HUB}`, { target: "news", arguments: ["extra", { n: 1 }] });
  assert.equal(res.status, 200, `REST broadcast answered ${res.status}: ${res.text}`);
  const { cursor } = res.json();
  assertCursor(cursor);
  assert.equal(await mp.expect("news", ["extra", { n: 1 }]), cursor, "mia: cursor header");
});

test("m3: binary arguments reach JSON clients as base64; errors reject and leave the connection usable", { timeout: TEST_TIMEOUT }, async (t) => {
  const mp = await connect(t, "mia", "messagepack", ["bin", "ok"]);
  const js = await connect(t, "jay", "json", ["bin", "ok"]);
  const cursor = await mp.invoke("Broadcast", "bin", new Uint8Array([1, 2, 3]));
  assertCursor(cursor);
  assert.equal(await js.expect("bin", ["AQID"]), cursor);

  await assert.rejects(mp.invoke("NoSuchMethod", 1), /NoSuchMethod/);
  await assert.rejects(mp.invoke("JoinGroup"), "JoinGroup without a group should reject");
  assert.equal(mp.connection.state, signalR.HubConnectionState.Connected);
  const c2 = await mp.invoke("Broadcast", "ok", "still-alive");
  assert.equal(await mp.expect("ok", ["still-alive"]), c2);
});
