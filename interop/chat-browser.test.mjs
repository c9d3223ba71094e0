// The chat example's page (examples/chat/static/index.html, the official browser client) in a real
// headless Chromium, open on two nodes as two users. Run by app_test.go:
//
//   CHAT_URLS=<node1>,<node2> CHROMIUM=/usr/bin/chromium SCREENSHOT=<file.png> node --test chat-browser.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const [URL1, URL2] = (process.env.CHAT_URLS ?? "").split(",");
if (!URL1 || !URL2) throw new Error("CHAT_URLS must name two nodes");

test("two browsers on two nodes chat through the cluster", { timeout: 120_000 }, async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  try {
    const open = async (url, user) => {
      const page = await browser.newPage();
      page.on("console", (m) => console.log(`${user} page:`, m.text()));
      page.on("pageerror", (e) => console.log(`${user} page error:`, e.message));
      await page.goto(`${url}/?user=${user}&room=lobby`);
      await page.waitForFunction(() => window.chatReady !== undefined, null, { timeout: 30_000 });
      await page.evaluate(() => window.chatReady);
      return page;
    };
    const alice = await open(URL1, "alice");
    const bob = await open(URL2, "bob");
    const say = async (page, text) => {
      await page.fill("input[name=text]", text);
      await page.click("form#send button");
    };
    const sees = (page, line) => page.waitForFunction((l) => window.chatLog.includes(l), line, { timeout: 30_000 });
    await say(alice, "hello from node 1");
    await sees(bob, "alice: hello from node 1");
    await say(bob, "hi alice, this is node 2");
    await sees(alice, "bob: hi alice, this is node 2");
    await sees(alice, "bob joined #lobby");
    // The application refuses an empty message: the page shows its error, nobody gets it.
    await say(bob, "   ");
    await sees(bob, "empty message");
    assert.equal((await alice.evaluate(() => window.chatLog)).filter((l) => l.startsWith("bob: ")).length, 1);
    assert.equal(await bob.textContent("#me"), "bob");
    if (process.env.SCREENSHOT) await bob.screenshot({ path: process.env.SCREENSHOT });
  } finally {
    await browser.close();
  }
});
