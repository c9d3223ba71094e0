// The raftplane dashboard in a real headless Chromium (Debian's package, driven by playwright-core from
// interop/node_modules): the page of a three-node cluster asks for the API key, shows the three members
// with one leader, then shows a member killed with kill -9 as unreachable.
//
//   PAGE_URL=http://NODE1/dashboard API_KEY=... VICTIM=node3 CONTROL_URL=http://... \
//   NODE_MODULES=/abs/interop/node_modules CHROMIUM=/usr/bin/chromium SHOTS=/dir node --test dashboard.test.mjs
//
// browser_test.go starts the cluster and a control server whose /kill kills VICTIM, and runs this file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.NODE_MODULES, "noop.js"));
const { chromium } = require("playwright-core");

const rowsState = () =>
  [...document.querySelectorAll("#members tbody tr")].map((r) => ({
    id: r.dataset.member, reachable: r.dataset.reachable, role: r.dataset.role, text: r.textContent,
  }));

test("dashboard of a 3-node cluster shows a node killed with kill -9", { timeout: 110_000 }, async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1500, height: 1100 } });
    const errors = [];
    page.on("console", (m) => console.log("page:", m.text()));
    page.on("pageerror", (e) => { errors.push(e.message); console.log("page error:", e.message); });
    await page.goto(process.env.PAGE_URL);

    // The page asks for the key: the JSON needs it.
    await page.waitForSelector("#login:not([hidden])", { timeout: 10_000 });
    await page.fill("#key", process.env.API_KEY);
    await page.click("#loginForm button");

    // Three members, all reachable, one leader, each with its clients (CONNECTIONS: id=count,...), and
    // messages flowing in the charts.
    const want = Object.fromEntries(process.env.CONNECTIONS.split(",").map((kv) => kv.split("=")));
    await page.waitForFunction((want) => {
      const rows = [...document.querySelectorAll("#members tbody tr")];
      return rows.length === 3 && rows.every((r) => r.dataset.reachable === "true") &&
        rows.filter((r) => r.dataset.role === "leader").length === 1 &&
        rows.every((r) => r.dataset.connections === want[r.dataset.member]) &&
        Number(document.body.dataset.committed) > 0 && Number(document.body.dataset.polls) >= 6;
    }, want, { timeout: 30_000 });
    const before = await page.evaluate(rowsState);
    console.log("before:", JSON.stringify(before));
    await page.screenshot({ path: path.join(process.env.SHOTS, "dashboard-3-nodes.png"), fullPage: true });

    const victim = process.env.VICTIM;
    const t0 = Date.now();
    const r = await fetch(process.env.CONTROL_URL + "/kill");
    assert.equal(r.status, 200, "control /kill");
    assert.equal(await r.text(), victim);

    // The killed member turns unreachable; the others stay up.
    await page.waitForFunction((v) => {
      const rows = [...document.querySelectorAll("#members tbody tr")];
      const row = rows.find((x) => x.dataset.member === v);
      return row && row.dataset.reachable === "false" && rows.filter((x) => x.dataset.reachable === "true").length === 2;
    }, victim, { timeout: 15_000 });
    console.log(JSON.stringify({ victim, shown_unreachable_after_ms: Date.now() - t0 }));
    const after = await page.evaluate(rowsState);
    console.log("after:", JSON.stringify(after));
    const row = after.find((x) => x.id === victim);
    assert.match(row.text, /UNREACHABLE/);
    await page.screenshot({ path: path.join(process.env.SHOTS, "dashboard-node-killed.png"), fullPage: true });
    assert.deepEqual(errors, [], "no script error in the page");
  } finally {
    await browser.close();
  }
});
