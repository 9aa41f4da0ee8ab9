// The client against the real gateway (target/debug/switchboard, or SWITCHBOARD_BIN) with
// `[resume] enabled = true`: resume through a cutting proxy, 409, window expiry, management
// sends and closes, plain mode, and the chaos run. Client messages go to an HTTP function
// in this process that records each invocation and answers with the message (two-way).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { SwitchboardClient } from "../switchboard.js";
import { startChaosProxy } from "./support/chaos-proxy.mjs";
import { runChaos } from "./support/chaos.mjs";
import { startFunction, gatewayConfig } from "./support/function-server.mjs";
import { startGateway, tempConfig, gatewaySupportsResume } from "../../../tests/browser/gateway.mjs";

const supported = gatewaySupportsResume();
const skip = supported ? false : "the gateway binary has no [resume] (build it: cargo build)";

async function startStack(opts) {
  const fn = await startFunction();
  const cfg = tempConfig(gatewayConfig(fn.port, opts));
  const gw = await startGateway(["serve", "--config", cfg.file]);
  const wsUrl = new URL(gw.ws);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  return {
    fn, gw,
    target: { host: wsUrl.hostname, port: Number(wsUrl.port) },
    /** POST /@connections/{id}: a server-originated message. */
    async post(id, text) {
      const res = await fetch(`${gw.management}@connections/${encodeURIComponent(id)}`, { method: "POST", body: text, headers: { "content-type": "text/plain" } });
      if (res.status !== 200) throw new Error(`POST @connections/${id}: ${res.status} ${await res.text()}`);
    },
    async del(id) {
      const res = await fetch(`${gw.management}@connections/${encodeURIComponent(id)}`, { method: "DELETE" });
      return res.status;
    },
    async stop() {
      agent.destroy();
      await gw.stop();
      await fn.close();
      cfg.remove();
    },
  };
}

let stack;
before(async () => { if (supported) stack = await startStack(); });
after(async () => { await stack?.stop(); });

function until(pred, ms = 10000, what = "condition") {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const poll = () => {
      if (pred()) return resolve();
      if (Date.now() - t0 > ms) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(poll, 5);
    };
    poll();
  });
}

function record(c) {
  const events = [];
  const messages = [];
  for (const e of ["open", "resumed", "reconnecting", "close"]) c.on(e, (x) => events.push([e, x]));
  c.on("message", (d) => messages.push(d));
  return { events, names: () => events.map(([e]) => e), messages };
}

const fast = { reconnect: { baseMs: 20, maxMs: 300 } };

test("hello, echo through a function (text and binary), management sends", { skip }, async () => {
  const c = new SwitchboardClient(stack.gw.ws, fast);
  const { names, messages } = record(c);
  try {
    await until(() => c.state === "open", 10000, "open");
    assert.equal(c.mode, "resume");
    const id = c.connectionId;
    assert.match(id, /\S+/);
    c.send("m1:not a prefix");
    c.send(new Uint8Array([0, 1, 2, 255]));
    await stack.post(id, "pushed");
    await until(() => messages.length === 3, 10000, "3 messages");
    const texts = messages.filter((m) => typeof m === "string").sort();
    assert.deepEqual(texts, ["m1:not a prefix", "pushed"]);
    const bin = messages.find((m) => typeof m !== "string");
    assert.deepEqual([...new Uint8Array(bin)], [0, 1, 2, 255]);
    // The function saw payloads only, never the m<n>: prefix.
    const bodies = stack.fn.of(id, "MESSAGE").map((e) => e.body);
    assert.deepEqual(bodies, ["m1:not a prefix", Buffer.from([0, 1, 2, 255]).toString("base64")]);
    assert.deepEqual(names(), ["open"]);
  } finally {
    c.close();
  }
});

test("a cut connection resumes: same id, no second $connect, missed messages replayed once", { skip }, async () => {
  const proxy = await startChaosProxy(stack.target);
  const c = new SwitchboardClient(proxy.url, fast);
  const { names, messages } = record(c);
  try {
    await until(() => c.state === "open");
    const id = c.connectionId;
    await stack.post(id, "one");
    await until(() => messages.length === 1);
    proxy.cutAll();
    await stack.post(id, "two"); // parked: buffered for the client
    c.send("three");
    await until(() => messages.length === 3, 10000, "replay and echo");
    assert.deepEqual(messages, ["one", "two", "three"]);
    assert.deepEqual(names(), ["open", "reconnecting", "resumed"]);
    assert.equal(c.connectionId, id);
    assert.equal(stack.fn.of(id, "CONNECT").length, 1);
    assert.equal(stack.fn.of(id, "DISCONNECT").length, 0);
    c.close();
    await until(() => stack.fn.of(id, "DISCONNECT").length === 1, 10000, "$disconnect");
    assert.equal(stack.fn.of(id, "DISCONNECT")[0].code, 1000);
  } finally {
    c.close();
    await proxy.close();
  }
});

test("409 while the gateway still holds the old socket: retried until it lets go", { skip }, async () => {
  const proxy = await startChaosProxy(stack.target);
  const c = new SwitchboardClient(proxy.url, fast);
  const { names, messages } = record(c);
  try {
    await until(() => c.state === "open");
    const id = c.connectionId;
    proxy.strandAll();
    await stack.post(id, "kept");
    await until(() => names().filter((e) => e === "reconnecting").length >= 3, 10000, "refused attempts");
    assert.equal(c.state, "reconnecting");
    proxy.releaseStranded();
    await until(() => names().includes("resumed"), 10000, "resumed");
    await until(() => messages.length === 1);
    assert.deepEqual(messages, ["kept"]);
    assert.equal(c.connectionId, id);
  } finally {
    c.close();
    await proxy.close();
  }
});

test("the window expired: a fresh connection, 'open' with sessionLost; $disconnect says why", { skip }, async () => {
  const short = await startStack({ windowSecs: 1 });
  const proxy = await startChaosProxy(short.target);
  const c = new SwitchboardClient(proxy.url, { reconnect: { baseMs: 1500, maxMs: 1500, jitter: 0 } });
  const { events } = record(c);
  try {
    await until(() => c.state === "open");
    const first = c.connectionId;
    proxy.cutAll(); // the reconnect comes 1.5 s later: after the 1 s window
    await until(() => events.filter(([e]) => e === "open").length === 2, 10000, "second open");
    const open = events.filter(([e]) => e === "open")[1][1];
    assert.equal(open.sessionLost, true);
    assert.equal(open.previousConnectionId, first);
    assert.notEqual(c.connectionId, first);
    await until(() => short.fn.of(first, "DISCONNECT").length === 1, 10000, "$disconnect");
    assert.deepEqual(
      [short.fn.of(first, "DISCONNECT")[0].code, short.fn.of(first, "DISCONNECT")[0].reason],
      [1006, "resume window expired"],
    );
  } finally {
    c.close();
    await proxy.close();
    await short.stop();
  }
});

test("DELETE @connections/{id} closes with 1000: the client stops", { skip }, async () => {
  const c = new SwitchboardClient(stack.gw.ws, fast);
  const { events, names } = record(c);
  try {
    await until(() => c.state === "open");
    assert.equal(await stack.del(c.connectionId), 204);
    await until(() => c.state === "closed", 10000, "closed");
    assert.deepEqual(names(), ["open", "close"]);
    assert.equal(events[1][1].code, 1000);
    assert.equal(events[1][1].byClient, false);
    await sleep(300);
    assert.deepEqual(names(), ["open", "close"]);
  } finally {
    c.close();
  }
});

test("resume: false is a plain WebSocket: raw payloads, no hello", { skip }, async () => {
  const c = new SwitchboardClient(stack.gw.ws, { ...fast, resume: false });
  const { messages } = record(c);
  try {
    await until(() => c.state === "open");
    assert.equal(c.mode, "plain");
    c.send("raw");
    await until(() => messages.length === 1);
    assert.deepEqual(messages, ["raw"]);
  } finally {
    c.close();
  }
});

test("chaos: 10,000 messages each way through a proxy cutting every 50-400 ms, exactly once, in order", { skip, timeout: 60000 }, async () => {
  let id = null;
  const stats = await runChaos({
    target: stack.target,
    push: async (cid, text) => { id = cid; await stack.post(cid, text); },
    invoked: () => stack.fn.of(id, "MESSAGE").map((e) => e.body),
    paceMs: 5,
    deadlineMs: 50000,
  });
  assert.equal(stack.fn.of(id, "CONNECT").length, 1, "one $connect: every reconnect resumed");
  console.log(`# chaos (real gateway): ${JSON.stringify(stats)}`);
});
