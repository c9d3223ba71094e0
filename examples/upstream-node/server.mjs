// An upstream for raftplane in Node, with node:http only: the shape of Azure SignalR Service's
// serverless upstream (what the Azure Functions SignalR trigger reads), so it is also a reference
// for an upstream in any language. See README.md.
//
//   RAFTPLANE_API_KEY=<the nodes' -api-key> RAFTPLANE_URL=http://127.0.0.1:5001 node server.mjs
//
// raftplane POSTs one request per event, to its -upstream URL template; this server reads the
// X-ASRS-* headers (not the path), so any template works:
//   - category "connections", event "connected": a client connects. A 2xx answer accepts it;
//     anything else refuses it, and the client's start() fails with the answer's text.
//   - category "connections", event "disconnected": a connection ended, for good. Delivered at least
//     once: a repeat carries the same X-Raftplane-Event-Id, and is dropped.
//   - category "messages", event <method>: a client invoked a method raftplane does not have. The
//     body is the hub protocol's Invocation message in the client's protocol (JSON or MessagePack);
//     the answer, to an invocation with an id, is a Completion message in that protocol.
// Every request carries X-ASRS-Signature: sha256=<hex HMAC-SHA256 of the connection id, keyed with
// the API key>; one without a valid signature is refused with 401.
import http from "node:http";
import crypto from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import * as msgpack from "./msgpack.mjs";

// Settings, from the environment. Every limit is one.
const env = process.env;
function intSetting(name, def, min) {
  const raw = env[name];
  if (raw === undefined || raw === "") return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    console.error(`${name}=${raw}: want an integer of at least ${min}`);
    process.exit(2);
  }
  return n;
}
const settings = {
  host: env.UPSTREAM_HOST || "127.0.0.1",
  port: intSetting("UPSTREAM_PORT", 7071, 0), // 0: any free port (printed at start)
  apiKey: env.RAFTPLANE_API_KEY || "",
  // raftplane nodes for the REST API, tried in turn (Broadcast2).
  raftplane: (env.RAFTPLANE_URL || "").split(",").map((s) => s.trim().replace(/\/+$/, "")).filter(Boolean),
  maxBody: intSetting("UPSTREAM_MAX_BODY", 1 << 20, 64), // bytes of one request body
  recordMax: intSetting("UPSTREAM_RECORD_MAX", 10000, 1), // events and invocations kept for GET /events
  dedupMax: intSetting("UPSTREAM_DEDUP_MAX", 10000, 1), // event ids remembered to drop repeats
  restTimeout: intSetting("UPSTREAM_REST_TIMEOUT_MS", 3000, 1), // one REST call to a node
  maxSlow: intSetting("UPSTREAM_MAX_SLOW_MS", 60000, 0), // longest Slow(ms) sleeps
  stopGrace: intSetting("UPSTREAM_STOP_GRACE_MS", 5000, 0), // requests in flight may finish this long at a stop
};
if (!settings.apiKey) {
  // Without the key nothing can be verified: anyone could pose as raftplane.
  console.error("RAFTPLANE_API_KEY must be set to the raftplane nodes' -api-key");
  process.exit(2);
}

const JSON_TYPE = "application/json";
const MSGPACK_TYPE = "application/x-msgpack";
const RS = "\x1e"; // the JSON hub protocol's record separator
const INVOCATION = 1, COMPLETION = 3, OPEN_CONNECTION = 10, CLOSE_CONNECTION = 11;

/** A refusal with an HTTP status, answered as text. */
class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** An error a method throws for the caller: its text goes into the Completion. */
class HubError extends Error {}

// verify checks X-ASRS-Signature: one of its comma-separated "sha256=<hex>" values must be the
// HMAC-SHA256 of the connection id keyed with the API key. Hex is compared without regard to case
// (Azure and raftplane send it upper-case), in constant time.
function verify(connectionId, header) {
  const want = crypto.createHmac("sha256", settings.apiKey).update(connectionId, "utf8").digest();
  for (const part of (header || "").split(",")) {
    const m = /^\s*sha256=([0-9a-fA-F]{64})\s*$/.exec(part);
    if (m && crypto.timingSafeEqual(Buffer.from(m[1], "hex"), want)) return true;
  }
  return false;
}

// Bounded memory: the record (for GET /events) and the event ids seen (to drop repeats) keep their
// newest entries only.
class Bounded {
  constructor(max) {
    this.max = max;
    this.items = [];
  }
  push(x) {
    this.items.push(x);
    if (this.items.length > this.max) {
      this.items.splice(0, this.items.length - this.max);
    }
  }
}
class SeenIDs {
  constructor(max) {
    this.max = max;
    this.ids = new Set(); // in insertion order: the oldest is evicted first
  }
  // add returns false when id was seen already.
  add(id) {
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    if (this.ids.size > this.max) this.ids.delete(this.ids.values().next().value);
    return true;
  }
}
const record = { connections: new Bounded(settings.recordMax), invocations: new Bounded(settings.recordMax), repeats: 0 };
const seen = new SeenIDs(settings.dedupMax);

// The hub's methods: each gets (args, context) and returns the result, or throws a HubError.
// Names are matched without regard to case, as SignalR does.
const methods = {
  echo(args) {
    if (args.length !== 1) throw new HubError("Echo takes 1 argument");
    return args[0];
  },
  add(args) {
    if (args.length !== 2 || !args.every((a) => typeof a === "number")) throw new HubError("Add takes 2 numbers");
    return args[0] + args[1];
  },
  fail() {
    throw new HubError("Fail always fails");
  },
  whoami(_args, ctx) {
    return { user: ctx.userId ?? null, hub: ctx.hub, connectionId: ctx.connectionId, query: ctx.query ?? "", claims: ctx.claims ?? "" };
  },
  // Broadcast2(text) sends ("broadcast2", user, text) to every client of the hub through raftplane's
  // REST API and returns the send's cursor. The idempotency key makes a retry (of this call, or of
  // the invocation after a stateful reconnect) commit once.
  async broadcast2(args, ctx) {
    if (args.length !== 1 || typeof args[0] !== "string") throw new HubError("Broadcast2 takes 1 string");
    const key = ctx.eventId || `${ctx.connectionId}:${ctx.invocationId ?? crypto.randomUUID()}`;
    const body = JSON.stringify({ target: "broadcast2", arguments: [ctx.userId ?? null, args[0]] });
    return (await rest(`/api/v1/hubs/${encodeURIComponent(ctx.hub)}`, body, key)).cursor;
  },
  // Slow(ms) answers after ms milliseconds (at most UPSTREAM_MAX_SLOW_MS), or not at all when
  // raftplane gives up first (-upstream-timeout): to see what a slow upstream does.
  async slow(args, ctx) {
    const ms = args[0];
    if (args.length !== 1 || !Number.isInteger(ms) || ms < 0 || ms > settings.maxSlow) {
      throw new HubError(`Slow takes a whole number of milliseconds, 0 to ${settings.maxSlow}`);
    }
    await sleep(ms, undefined, { signal: ctx.signal }).catch(() => {});
    return ms;
  },
};

// rest POSTs body to path on the raftplane nodes, one after another until one answers 2xx.
async function rest(path, body, idempotencyKey) {
  if (settings.raftplane.length === 0) throw new HubError("RAFTPLANE_URL is not set: the upstream cannot reach raftplane");
  let last = "";
  for (const base of settings.raftplane) {
    try {
      const r = await fetch(base + path, {
        method: "POST",
        headers: { "Content-Type": JSON_TYPE, Authorization: `Bearer ${settings.apiKey}`, "Idempotency-Key": idempotencyKey },
        body,
        signal: AbortSignal.timeout(settings.restTimeout),
      });
      const text = await r.text();
      if (r.ok) return JSON.parse(text);
      last = `${base}: ${r.status} ${text.trim()}`;
      if (r.status < 500) break; // the request is wrong: another node would say the same
    } catch (e) {
      last = `${base}: ${e.message}`;
    }
  }
  throw new HubError(`raftplane did not take the send (${last})`);
}

// parseInvocation reads the Invocation in the request's protocol: JSON (unframed, or with its
// record separator) or MessagePack ([1, headers, invocationId, target, arguments], unframed or
// length-prefixed).
function parseInvocation(contentType, body) {
  let type, invocationId, target, args;
  if (contentType === MSGPACK_TYPE) {
    let m;
    try {
      m = msgpack.decode(body);
    } catch {
      try {
        m = msgpack.decode(msgpack.unframe(body)); // a framed message
      } catch (e) {
        throw new HttpError(400, `not a MessagePack message: ${e.message}`);
      }
    }
    if (!Array.isArray(m) || m.length < 5) throw new HttpError(400, "not a MessagePack hub message");
    [type, , invocationId, target, args] = m;
  } else {
    let m;
    try {
      m = JSON.parse(body.toString("utf8").split(RS)[0]);
    } catch (e) {
      throw new HttpError(400, `not JSON: ${e.message}`);
    }
    if (m === null || typeof m !== "object") throw new HttpError(400, "not a JSON hub message");
    ({ type, invocationId, target, arguments: args } = m);
  }
  if (type !== INVOCATION || typeof target !== "string" || !Array.isArray(args)) {
    throw new HttpError(400, "not an Invocation message");
  }
  return { invocationId: typeof invocationId === "string" ? invocationId : null, target, args };
}

// completion encodes the answer to invocationId as the Functions trigger writes it: a Completion
// message in the request's protocol, framed (JSON with its record separator, MessagePack with its
// length prefix).
function completion(contentType, invocationId, result, error) {
  if (contentType === MSGPACK_TYPE) {
    // [3, headers, invocationId, resultKind (1 error, 2 void, 3 result), result or error]
    const m = error !== undefined ? [COMPLETION, {}, invocationId, 1, error]
      : result === undefined ? [COMPLETION, {}, invocationId, 2]
      : [COMPLETION, {}, invocationId, 3, result];
    return msgpack.frame(msgpack.encode(m));
  }
  const m = { type: COMPLETION, invocationId };
  if (error !== undefined) m.error = error;
  else if (result !== undefined) m.result = result;
  return Buffer.from(JSON.stringify(m) + RS, "utf8");
}

// context is what a handler knows about the request, from the X-ASRS-* headers.
function context(req) {
  const h = (name) => req.headers[name.toLowerCase()];
  return {
    connectionId: h("X-ASRS-Connection-Id"),
    hub: h("X-ASRS-Hub"),
    category: h("X-ASRS-Category"),
    event: h("X-ASRS-Event"),
    userId: h("X-ASRS-User-Id"),
    claims: h("X-ASRS-User-Claims"),
    query: h("X-ASRS-Client-Query"),
    eventId: h("X-Raftplane-Event-Id"),
  };
}

async function readBody(req) {
  const parts = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > settings.maxBody) throw new HttpError(413, `the body is larger than ${settings.maxBody} bytes`);
    parts.push(chunk);
  }
  return Buffer.concat(parts);
}

// onConnections handles connected and disconnected; it answers with a status and a text.
function onConnections(ctx, body) {
  let msg;
  try {
    msg = JSON.parse(body.toString("utf8"));
  } catch (e) {
    throw new HttpError(400, `not JSON: ${e.message}`);
  }
  if (msg === null || typeof msg !== "object") throw new HttpError(400, "not a serverless message");
  const connected = ctx.event === "connected" && msg.type === OPEN_CONNECTION;
  const disconnected = ctx.event === "disconnected" && msg.type === CLOSE_CONNECTION;
  if (!connected && !disconnected) throw new HttpError(400, `unknown connections event ${ctx.event} (message type ${msg.type})`);
  if (connected && ctx.userId === "banned") {
    // Refused: raftplane closes the connection, and the client's start() fails with this text.
    // No disconnected event follows for it.
    return [403, "banned users may not connect"];
  }
  if (ctx.eventId && !seen.add(ctx.eventId)) {
    record.repeats++; // at least once: the same event again, after a crash or a new leader
    return [200, "already recorded"];
  }
  const entry = { event: ctx.event, connectionId: ctx.connectionId, hub: ctx.hub, userId: ctx.userId ?? null,
    eventId: ctx.eventId ?? null, at: new Date().toISOString() };
  if (connected) {
    entry.query = ctx.query ?? "";
    entry.claims = ctx.claims ?? "";
  } else {
    entry.error = msg.error ?? null; // none: the client closed the connection itself
  }
  record.connections.push(entry);
  return [200, "ok"];
}

// onMessage runs a method and answers with its Completion (none for a call without an id).
async function onMessage(ctx, contentType, body, signal) {
  const inv = parseInvocation(contentType, body);
  if (inv.target.toLowerCase() !== (ctx.event || "").toLowerCase()) {
    throw new HttpError(400, `the event (${ctx.event}) and the invocation's target (${inv.target}) differ`);
  }
  record.invocations.push({ method: inv.target, connectionId: ctx.connectionId, invocationId: inv.invocationId,
    eventId: ctx.eventId ?? null, at: new Date().toISOString() });
  let result, error;
  const method = Object.hasOwn(methods, inv.target.toLowerCase()) ? methods[inv.target.toLowerCase()] : undefined;
  try {
    if (!method) throw new HubError(`Unknown method '${inv.target}'`);
    result = await method(inv.args, { ...ctx, invocationId: inv.invocationId, signal });
  } catch (e) {
    if (!(e instanceof HubError)) console.error(`${inv.target}:`, e);
    // As ASP.NET Core does: the text of an error meant for the caller, a generic one otherwise.
    error = e instanceof HubError ? e.message : `An unexpected error occurred invoking '${inv.target}' on the upstream.`;
  }
  if (inv.invocationId === null) return null; // fire and forget: nothing to answer
  return completion(contentType, inv.invocationId, result, error);
}

async function handle(req, res) {
  const url = new URL(req.url, "http://upstream");
  if (req.method === "GET" && url.pathname === "/healthz") return reply(res, 200, "ok");
  if (req.method === "GET" && url.pathname === "/events") {
    // What was recorded, for tests and curious people: behind the same key as raftplane's REST API.
    if (req.headers.authorization !== `Bearer ${settings.apiKey}`) throw new HttpError(401, "GET /events needs Authorization: Bearer <key>");
    return replyJSON(res, 200, { connections: record.connections.items, invocations: record.invocations.items, repeats: record.repeats });
  }
  if (req.method !== "POST") throw new HttpError(405, "raftplane POSTs");
  const ctx = context(req);
  if (!ctx.connectionId) throw new HttpError(400, "no X-ASRS-Connection-Id");
  if (!verify(ctx.connectionId, req.headers["x-asrs-signature"])) throw new HttpError(401, "bad or missing X-ASRS-Signature");
  const contentType = (req.headers["content-type"] || "").split(";")[0].trim().toLowerCase();
  if (contentType !== JSON_TYPE && contentType !== MSGPACK_TYPE) {
    throw new HttpError(415, `Content-Type ${contentType || "(none)"}: want ${JSON_TYPE} or ${MSGPACK_TYPE}`);
  }
  const body = await readBody(req);
  if (ctx.category === "connections") {
    const [status, text] = onConnections(ctx, body);
    return reply(res, status, text);
  }
  if (ctx.category !== "messages") throw new HttpError(400, `unknown category ${ctx.category}`);
  // raftplane gives up after -upstream-timeout and closes the request: stop working on it.
  const abort = new AbortController();
  res.on("close", () => abort.abort());
  const answer = await onMessage(ctx, contentType, body, abort.signal);
  if (answer === null) return reply(res, 200, "");
  res.writeHead(200, { "Content-Type": contentType, "Content-Length": answer.length });
  res.end(answer);
}

function reply(res, status, text) {
  if (res.headersSent) return;
  const b = Buffer.from(text, "utf8");
  res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", "Content-Length": b.length });
  res.end(b);
}

function replyJSON(res, status, v) {
  const b = Buffer.from(JSON.stringify(v), "utf8");
  res.writeHead(status, { "Content-Type": JSON_TYPE, "Content-Length": b.length });
  res.end(b);
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((e) => {
    if (e instanceof HttpError) return reply(res, e.status, e.message);
    console.error(e);
    reply(res, 500, "internal error");
  });
});
server.requestTimeout = 120_000; // longer than any Slow, shorter than forever
server.listen(settings.port, settings.host, () => {
  const { address, port } = server.address();
  console.log(`upstream listening on http://${address}:${port}`);
});

// A graceful stop: no new requests, the ones in flight finish.
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    server.close(() => process.exit(0));
    server.closeIdleConnections();
    setTimeout(() => server.closeAllConnections(), settings.stopGrace).unref();
  });
}
