// The chat example (examples/chat: Lambda-style Python handlers run by `switchboard dev`)
// in a real browser: two pages join one room, talk both ways, and see presence change.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startGateway, launchBrowser } from "./harness.mjs";

async function join(page, url, name, room) {
  await page.goto(url);
  await page.fill("#name", name);
  await page.fill("#room", room);
  await page.click("#join button");
  await page.waitForFunction(() => document.querySelector("#status").textContent.startsWith("connected"), null, { timeout: 20000 });
}

const online = (page) => page.$$eval("#online li", (lis) => lis.map((li) => li.textContent));
const logText = (page) => page.$eval("#log", (d) => d.textContent);

test("two pages chat in one room and see who is online", { timeout: 90000 }, async () => {
  const gw = await startGateway(["dev", "examples/chat", "--listen", "127.0.0.1:0", "--management-listen", "127.0.0.1:0"]);
  const browser = await launchBrowser();
  try {
    const a = await browser.newPage();
    const b = await browser.newPage();
    await join(a, gw.http, "ada", "tea");
    await join(b, gw.http, "bob", "tea");

    // Presence: each sees both names.
    await a.waitForFunction(() => [...document.querySelectorAll("#online li")].some((li) => li.textContent === "bob"), null, { timeout: 20000 });
    await b.waitForFunction(() => [...document.querySelectorAll("#online li")].some((li) => li.textContent === "ada"), null, { timeout: 20000 });
    assert.deepEqual((await online(b)).sort(), ["ada", "bob"]);

    // Messages both ways, live.
    await a.fill("#msg", "hello bob");
    await a.press("#msg", "Enter");
    await b.waitForFunction(() => document.querySelector("#log").textContent.includes("ada: hello bob"), null, { timeout: 20000 });
    await b.fill("#msg", "hi ada");
    await b.press("#msg", "Enter");
    await a.waitForFunction(() => document.querySelector("#log").textContent.includes("bob: hi ada"), null, { timeout: 20000 });
    assert.match(await logText(a), /ada: hello bob/);

    // One page leaves: the other's online list changes.
    await b.close();
    await a.waitForFunction(() => ![...document.querySelectorAll("#online li")].some((li) => li.textContent === "bob"), null, { timeout: 20000 });
    assert.match(await logText(a), /bob left/);
    assert.deepEqual(await online(a), ["ada"]);
  } catch (e) {
    console.error(gw.log());
    throw e;
  } finally {
    await browser.close();
    await gw.stop();
  }
});
