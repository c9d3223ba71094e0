// Interop tests: the official @microsoft/signalr JS client against a running raftplane server.
//
//   RAFTPLANE_URL=http://127.0.0.1:5000 [RAFTPLANE_API_KEY=key] node --test basic.test.mjs
//
// interop_test.go builds and starts the server and runs this file; see README.md.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as signalR from "@microsoft/signalr";

const BASE = (process.env.RAFTPLANE_URL ?? "").replace(/\/+$/, "");
const API_KEY = process.env.RAFTPLANE_API_KEY ?? "";
if (!BASE) {
  throw new Error("RAFTPLANE_URL is not set (e.g. http://127.0.0.1:5000)");
}

const HUB = "chat";
const TEST_TIMEOUT = 30_000; // per test (generous: CI machines are small and busy)
const WAIT_TIMEOUT = 10_000; // for one expected message
const QUIET_MS = 300; // how long "receives nothing" waits after the positive side has arrived

// Records the "cursor" header of every Invocation the client parses: connection.on() handlers only get
// the arguments. Everything else is the stock JSON protocol.
class CursorRecordingProtocol extends signalR.JsonHubProtocol {
  constructor(wire) {
    super();
    this.wire = wire;
  }
  parseMessages(input, logger) {
    const messages = super.parseMessages(input, logger);
    for (const m of messages) {
      if (m.type === signalR.MessageType.Invocation) {
        this.wire.push({ target: m.target, arguments: m.arguments, cursor: m.headers?.cursor });
      }
    }
    return messages;
  }
}

// The server documents cursors as "<epoch>:<index>:<offset>" with decimal index and offset. Clients
// otherwise treat cursors as opaque; this is the only place that looks inside, to check ordering.
function cursorOrder(cursor) {
  const parts = String(cursor).split(":");
  assert.equal(parts.length, 3, `cursor ${JSON.stringify(cursor)} is not <epoch>:<index>:<offset>`);
  assert.match(parts[1], /^\d+$/, `cursor ${JSON.stringify(cursor)}: index is not decimal`);
  assert.match(parts[2], /^\d+$/, `cursor ${JSON.stringify(cursor)}: offset is not decimal`);
  return [BigInt(parts[1]), BigInt(parts[2])];
}

function assertCursorAfter(later, earlier) {
  assert.notEqual(later, earlier, "cursors of two messages must differ");
  const [li, lo] = cursorOrder(later);
  const [ei, eo] = cursorOrder(earlier);
  assert.ok(li > ei || (li === ei && lo > eo), `cursor ${later} should be after ${earlier}`);
}

function assertCursor(cursor) {
  assert.equal(typeof cursor, "string", `cursor should be a string, got ${JSON.stringify(cursor)}`);
  assert.ok(cursor.length > 0, "cursor should be non-empty");
}

// Polls predicate until it returns a truthy value (which is returned) or the timeout passes.
async function waitFor(predicate, what, timeoutMs = WAIT_TIMEOUT) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = predicate();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A connected client. got: calls delivered to connection.on() handlers; wire: parsed Invocations with
// their cursor header (same order).
async function connect(t, user, targets) {
  const wire = [];
  const got = [];
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(`${BASE}/hubs/${HUB}?user=${encodeURIComponent(user)}`, {
      transport: signalR.HttpTransportType.WebSockets,
    })
    .withHubProtocol(new CursorRecordingProtocol(wire))
    .configureLogging(signalR.LogLevel.Warning)
    .build();
  for (const target of targets) {
    connection.on(target, (...args) => {
      got.push({ target, args }); // must return undefined: a returned value is sent as a client result
    });
  }
  t.after(() => connection.stop());
  await connection.start();
  assert.equal(connection.state, signalR.HubConnectionState.Connected);
  assert.ok(connection.connectionId, `${user}: connectionId should be set after negotiate`);

  const client = {
    user,
    connection,
    wire,
    got,
    invoke: (...a) => connection.invoke(...a),
    // Waits until a handler call target(...args) arrived, and returns the cursor header it carried.
    async expect(target, args) {
      await waitFor(
        () => got.some((c) => c.target === target && isDeepEqual(c.args, args)),
        `${user} to receive ${target}(${JSON.stringify(args).slice(1, -1)}); got ${JSON.stringify(got)}`,
      );
      const m = wire.find((w) => w.target === target && isDeepEqual(w.arguments, args));
      assert.ok(m, `${user}: ${target} reached the handler but not through the protocol`);
      return m.cursor;
    },
    assertNone(target) {
      const seen = wire.filter((w) => w.target === target);
      assert.deepEqual(seen, [], `${user} should not have received ${target}`);
    },
  };
  return client;
}

function isDeepEqual(a, b) {
  try {
    assert.deepStrictEqual(a, b);
    return true;
  } catch {
    return false;
  }
}

async function connectAliceAndBob(t, targets) {
  const alice = await connect(t, "alice", targets);
  const bob = await connect(t, "bob", targets);
  assert.notEqual(alice.connection.connectionId, bob.connection.connectionId);
  return { alice, bob };
}

// POST to the REST API; returns the parsed JSON body of a 200 answer.
async function restPost(path, body, { auth = true } = {}) {
  const headers = { "Content-Type": "application/json" };
  if (auth && API_KEY) headers.Authorization = `Bearer ${API_KEY}`;
  const res = await fetch(`${BASE}${path}`, { method: "POST", headers, body: JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, text, json: () => JSON.parse(text) };
}

test("a: SendToGroup reaches every group member with the invoke's cursor", { timeout: TEST_TIMEOUT }, async (t) => {
  const { alice, bob } = await connectAliceAndBob(t, ["say"]);
  await alice.invoke("JoinGroup", "room");
  await bob.invoke("JoinGroup", "room");

  const cursor = await alice.invoke("SendToGroup", "room", "say", "hello", 42);
  assertCursor(cursor);

  assert.equal(await alice.expect("say", ["hello", 42]), cursor, "alice: cursor header");
  assert.equal(await bob.expect("say", ["hello", 42]), cursor, "bob: cursor header");
});

test("b: REST broadcast reaches every client with the response's cursor", { timeout: TEST_TIMEOUT }, async (t) => {
  const { alice, bob } = await connectAliceAndBob(t, ["say", "news"]);
  const before = await alice.invoke("Broadcast", "say", "before-rest");
  assertCursor(before);
  await alice.expect("say", ["before-rest"]);

  const res = await restPost(`/api/v1/hubs/${HUB}`, { target: "news", arguments: ["extra", { n: 1 }] });
  assert.equal(res.status, 200, `REST broadcast answered ${res.status}: ${res.text}`);
  const { cursor } = res.json();
  assertCursor(cursor);
  assertCursorAfter(cursor, before);

  assert.equal(await alice.expect("news", ["extra", { n: 1 }]), cursor, "alice: cursor header");
  assert.equal(await bob.expect("news", ["extra", { n: 1 }]), cursor, "bob: cursor header");
});

test("b2: REST API rejects a request without the API key", { timeout: TEST_TIMEOUT, skip: !API_KEY && "no RAFTPLANE_API_KEY" }, async (t) => {
  const alice = await connect(t, "alice", ["news"]);
  const res = await restPost(`/api/v1/hubs/${HUB}`, { target: "news", arguments: ["unauthorized"] }, { auth: false });
  assert.ok(res.status === 401 || res.status === 403, `expected 401/403 without the API key, got ${res.status}: ${res.text}`);
  // Nothing may have been sent; a later authorized message arriving first proves the quiet wait was long enough.
  const ok = await restPost(`/api/v1/hubs/${HUB}`, { target: "news", arguments: ["authorized"] });
  assert.equal(ok.status, 200, `REST broadcast answered ${ok.status}: ${ok.text}`);
  await alice.expect("news", ["authorized"]);
  await sleep(QUIET_MS);
  assert.ok(!alice.got.some((c) => c.args[0] === "unauthorized"), "unauthorized broadcast was delivered");
});

test("c: SendToUser reaches that user only", { timeout: TEST_TIMEOUT }, async (t) => {
  const { alice, bob } = await connectAliceAndBob(t, ["dm"]);
  const cursor = await alice.invoke("SendToUser", "bob", "dm", "psst");
  assertCursor(cursor);
  assert.equal(await bob.expect("dm", ["psst"]), cursor, "bob: cursor header");
  await sleep(QUIET_MS);
  alice.assertNone("dm");
});

test("d: SendToOthers excludes the caller, Broadcast includes it, SendToConnection targets one connection", { timeout: TEST_TIMEOUT }, async (t) => {
  const { alice, bob } = await connectAliceAndBob(t, ["others", "all", "direct"]);

  const c1 = await alice.invoke("SendToOthers", "others", "not-for-alice");
  assertCursor(c1);
  assert.equal(await bob.expect("others", ["not-for-alice"]), c1);

  const c2 = await alice.invoke("Broadcast", "all", "everyone");
  assertCursor(c2);
  assert.equal(await alice.expect("all", ["everyone"]), c2);
  assert.equal(await bob.expect("all", ["everyone"]), c2);

  const c3 = await alice.invoke("SendToConnection", bob.connection.connectionId, "direct", "just-bob");
  assertCursor(c3);
  assert.equal(await bob.expect("direct", ["just-bob"]), c3);

  await sleep(QUIET_MS);
  alice.assertNone("others");
  alice.assertNone("direct");
});

test("e: errors reject the invocation and leave the connection usable", { timeout: TEST_TIMEOUT }, async (t) => {
  const alice = await connect(t, "alice", ["all"]);

  await assert.rejects(alice.invoke("NoSuchMethod", 1), (err) => {
    assert.match(String(err?.message), /NoSuchMethod/);
    return true;
  });
  await assert.rejects(alice.invoke("JoinGroup"), "JoinGroup without a group should reject");

  assert.equal(alice.connection.state, signalR.HubConnectionState.Connected);
  const cursor = await alice.invoke("Broadcast", "all", "still-alive");
  assertCursor(cursor);
  assert.equal(await alice.expect("all", ["still-alive"]), cursor);
});

test("f: LeaveGroup stops group messages", { timeout: TEST_TIMEOUT }, async (t) => {
  const { alice, bob } = await connectAliceAndBob(t, ["grp"]);
  await alice.invoke("JoinGroup", "room");
  await bob.invoke("JoinGroup", "room");
  await bob.invoke("LeaveGroup", "room");

  const cursor = await alice.invoke("SendToGroup", "room", "grp", "after-leave");
  assertCursor(cursor);
  assert.equal(await alice.expect("grp", ["after-leave"]), cursor);
  await sleep(QUIET_MS);
  bob.assertNone("grp");
});
