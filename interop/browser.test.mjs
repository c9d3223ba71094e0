// The official client's browser bundles (the client and the MessagePack protocol) in a real headless
// Chromium (Debian's package, driven by playwright-core), loaded from one origin and talking to a
// three-node raftplane cluster on others.
//
//   PAGE_URL=http://127.0.0.1:PORT/?hubs=... CHROMIUM=/usr/bin/chromium node --test browser.test.mjs
//
// browser_test.go starts the cluster and the page server and runs this file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

// Every transport x protocol pair of the official client, with the transport class it must have used.
const PAIRS = [
  ["WebSockets", "JSON", "WebSocketTransport"],
  ["ServerSentEvents", "JSON", "ServerSentEventsTransport"],
  ["LongPolling", "JSON", "LongPollingTransport"],
  ["WebSockets", "MessagePack", "WebSocketTransport"],
  ["LongPolling", "MessagePack", "LongPollingTransport"],
];

test("official browser client in Chromium, cross-origin, every transport x protocol, 3 nodes", { timeout: 120_000 }, async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage();
    page.on("console", (m) => console.log("page:", m.text()));
    page.on("pageerror", (e) => console.log("page error:", e.message));
    page.on("response", (r) => {
      if (r.status() >= 400) console.log("page response:", r.request().method(), r.url(), r.status());
    });
    await page.goto(process.env.PAGE_URL);
    const handle = await page.waitForFunction(() => window.__result, null, { timeout: 90_000 });
    const result = await handle.jsonValue();
    console.log(JSON.stringify(result));
    assert.equal(result.ok, true, JSON.stringify(result));
    assert.deepEqual(
      result.results.map((r) => [r.transport, r.protocol, r.transportUsed]),
      PAIRS,
      JSON.stringify(result),
    );
  } finally {
    await browser.close();
  }
});
