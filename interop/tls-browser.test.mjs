// The official client's browser bundles in headless Chromium over TLS: the page is served from an https
// origin and connects to a three-node raftplane cluster over https:// and wss:// (every transport x
// protocol pair, see browser/index.html). The test CA is not in Chromium's trust store; the browser trusts
// the nodes' certificate by its public key only (--ignore-certificate-errors-spki-list, honoured with the
// temporary --user-data-dir that playwright passes): certificate verification stays on for anything else,
// unlike --ignore-certificate-errors.
//
//   PAGE_URL=https://127.0.0.1:PORT/?hubs=... CHROMIUM=/usr/bin/chromium SPKI=<base64 sha256> node --test tls-browser.test.mjs
//
// tls_test.go starts the cluster and the page server and runs this file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const PAIRS = [
  ["WebSockets", "JSON", "WebSocketTransport"],
  ["ServerSentEvents", "JSON", "ServerSentEventsTransport"],
  ["LongPolling", "JSON", "LongPollingTransport"],
  ["WebSockets", "MessagePack", "WebSocketTransport"],
  ["LongPolling", "MessagePack", "LongPollingTransport"],
];

const PAGE_URL = process.env.PAGE_URL ?? "";
const SPKI = process.env.SPKI ?? "";
if (!PAGE_URL.startsWith("https://") || !SPKI) {
  throw new Error("PAGE_URL (https://...) and SPKI must be set");
}

test("official browser client in Chromium over https and wss, every transport x protocol, 3 nodes", { timeout: 120_000 }, async () => {
  const hubs = new URL(PAGE_URL).searchParams.get("hubs").split(",");
  assert.ok(hubs.length === 3 && hubs.every((h) => h.startsWith("https://")), `hubs ${hubs}`);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", `--ignore-certificate-errors-spki-list=${SPKI}`],
  });
  try {
    const page = await browser.newPage();
    const sockets = [];
    page.on("websocket", (ws) => sockets.push(ws.url()));
    page.on("console", (m) => console.log("page:", m.text()));
    page.on("pageerror", (e) => console.log("page error:", e.message));
    page.on("requestfailed", (r) => console.log("page request failed:", r.method(), r.url(), r.failure()?.errorText));
    page.on("response", (r) => {
      if (r.status() >= 400) console.log("page response:", r.request().method(), r.url(), r.status());
    });
    await page.goto(PAGE_URL);
    const handle = await page.waitForFunction(() => window.__result, null, { timeout: 90_000 });
    const result = await handle.jsonValue();
    console.log(JSON.stringify(result));
    assert.equal(result.ok, true, JSON.stringify(result));
    assert.equal(result.origin, new URL(PAGE_URL).origin);
    assert.deepEqual(
      result.results.map((r) => [r.transport, r.protocol, r.transportUsed]),
      PAIRS,
      JSON.stringify(result),
    );
    assert.ok(sockets.length > 0 && sockets.every((u) => u.startsWith("wss://")), `WebSocket URLs: ${sockets}`);
  } finally {
    await browser.close();
  }
});
