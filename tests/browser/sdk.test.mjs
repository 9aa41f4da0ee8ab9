// The JavaScript client (clients/js/switchboard.js) in a real browser against the real
// gateway with [resume] enabled, through a TCP proxy that keeps cutting the connection:
// messages both ways arrive exactly once and in order; and the chat example, served with
// [resume] on, rides out a cut without anyone seeing a "left".
import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, copyFileSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { startGateway, launchBrowser, tempConfig, gatewaySupportsResume, ROOT } from "./harness.mjs";
import { startChaosProxy } from "../../clients/js/test/support/chaos-proxy.mjs";

const skip = gatewaySupportsResume() ? false : "the gateway binary has no [resume]";

function target(gw) {
  const u = new URL(gw.ws);
  return { host: u.hostname, port: Number(u.port) };
}

test("SDK in chromium: 1,000 messages each way through a cutting proxy, exactly once, in order", { skip, timeout: 90000 }, async () => {
  const cfg = tempConfig(`
[server]
listen = "127.0.0.1:0"
management_listen = "127.0.0.1:0"
[static]
dir = "public"
[resume]
enabled = true
buffer_messages = 20000
[management]
auth = "none"
[functions.echo]
kind = "builtin"
name = "echo"
[routes."$default"]
function = "echo"
two_way = true
`);
  mkdirSync(path.join(cfg.dir, "public"));
  writeFileSync(path.join(cfg.dir, "public/index.html"), "<!doctype html><title>sdk</title>");
  copyFileSync(path.join(ROOT, "clients/js/switchboard.js"), path.join(cfg.dir, "public/switchboard.js"));
  const gw = await startGateway(["serve", "--config", cfg.file]);
  const proxy = await startChaosProxy(target(gw));
  const browser = await launchBrowser();
  const N = 1000;
  try {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${proxy.port}/`);
    const id = await page.evaluate(async () => {
      const { SwitchboardClient } = await import("/switchboard.js");
      const w = window;
      w.got = { s: [], c: [], events: [] };
      const c = new SwitchboardClient("/", { reconnect: { baseMs: 20, maxMs: 300 }, offlineQueue: { maxMessages: Infinity } });
      w.client = c;
      for (const e of ["open", "resumed", "reconnecting", "close"]) c.on(e, () => w.got.events.push(e));
      c.on("message", (d) => { (d[0] === "s" ? w.got.s : w.got.c).push(d); });
      await new Promise((r) => c.once("open", r));
      return c.connectionId;
    });
    assert.ok(id);
    proxy.start({ minMs: 50, maxMs: 400 });
    // Client -> gateway (echoed back) from the page, gateway -> client from here.
    const sending = page.evaluate(async (n) => {
      for (let i = 1; i <= n; i++) {
        window.client.send(`c${i}`);
        if (i % 20 === 0) await new Promise((r) => setTimeout(r, 10));
      }
    }, N);
    for (let i = 1; i <= N; i++) {
      const res = await fetch(`${gw.management}@connections/${encodeURIComponent(id)}`, { method: "POST", body: `s${i}` });
      assert.equal(res.status, 200, await res.text());
      if (i % 20 === 0) await sleep(5);
    }
    await sending;
    await page.waitForFunction((n) => window.got.s.length >= n && window.got.c.length >= n, N, { timeout: 40000 });
    proxy.stop();
    await sleep(200); // anything extra (a duplicate) would show up now
    const got = await page.evaluate(() => window.got);
    const want = (p) => Array.from({ length: N }, (_, k) => `${p}${k + 1}`);
    assert.deepEqual(got.s, want("s"));
    assert.deepEqual(got.c, want("c"));
    assert.equal(got.events.filter((e) => e === "open").length, 1, "one session throughout");
    assert.ok(got.events.includes("resumed"), `resumed after cuts (${proxy.stats.cuts} cuts)`);
    console.log(`# browser chaos: ${proxy.stats.cuts} cuts, ${got.events.filter((e) => e === "resumed").length} resumes`);
  } catch (e) {
    console.error(gw.log());
    throw e;
  } finally {
    await browser.close();
    await proxy.close();
    await gw.stop();
    cfg.remove();
  }
});

test("chat example with [resume] on: a cut connection resumes, nobody sees a 'left', a message sent meanwhile arrives once", { skip, timeout: 90000 }, async () => {
  // A copy of examples/chat with [resume] enabled.
  const cfg = tempConfig("");
  cpSync(path.join(ROOT, "examples/chat"), cfg.dir, { recursive: true });
  const toml = readFileSync(path.join(cfg.dir, "switchboard.toml"), "utf8");
  // The example enables [resume] itself; add it only to a copy that lacks it.
  const withResume = /^\[resume\]/m.test(toml) ? toml : toml + '\n[resume]\nenabled = true\n';
  writeFileSync(path.join(cfg.dir, "switchboard.toml"), withResume);
  const gw = await startGateway(["dev", cfg.dir, "--listen", "127.0.0.1:0", "--management-listen", "127.0.0.1:0"]);
  const proxy = await startChaosProxy(target(gw));
  const browser = await launchBrowser();
  const join = async (page, url, who) => {
    await page.goto(url);
    await page.fill("#name", who);
    await page.fill("#room", "tea");
    await page.click("#join button");
    await page.waitForFunction(() => document.querySelector("#status").textContent.startsWith("connected"), null, { timeout: 20000 });
  };
  try {
    const a = await browser.newPage();
    const b = await browser.newPage();
    await join(a, `http://127.0.0.1:${proxy.port}/`, "ada"); // ada's path is the one cut
    await join(b, gw.http, "bob");
    await a.waitForFunction(() => [...document.querySelectorAll("#online li")].some((li) => li.textContent === "bob"), null, { timeout: 20000 });
    const idA = await a.evaluate(() => document.querySelector("#status").textContent);
    assert.match(idA, /connected as ada/);

    proxy.cutAll();
    await b.fill("#msg", "while you were out");
    await b.press("#msg", "Enter");
    await a.fill("#msg", "typed while offline");
    await a.press("#msg", "Enter");
    await a.waitForFunction(() => document.querySelector("#log").textContent.includes("bob: while you were out"), null, { timeout: 20000 });
    await b.waitForFunction(() => document.querySelector("#log").textContent.includes("ada: typed while offline"), null, { timeout: 20000 });
    await sleep(500);
    const logA = await a.$eval("#log", (d) => d.textContent);
    const logB = await b.$eval("#log", (d) => d.textContent);
    assert.equal(logA.split("bob: while you were out").length - 1, 1, logA);
    assert.equal(logB.split("ada: typed while offline").length - 1, 1, logB);
    // Resumed, not reconnected: no $disconnect ("left") and no second $connect ("joined").
    assert.doesNotMatch(logB, /ada left/);
    assert.doesNotMatch(logB, /ada joined/);
    assert.match(gw.log(), /session resumed/);
  } catch (e) {
    console.error(gw.log());
    throw e;
  } finally {
    await browser.close();
    await proxy.close();
    await gw.stop();
    cfg.remove();
  }
});
