// The client over real sockets (Node's WebSocket) against a fake gateway written from
// docs/protocol.md (test/support/fake-switchboard.mjs): resume, 409, session expiry, plain
// servers, and the chaos run.
import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { SwitchboardClient } from "../switchboard.js";
import { startFakeSwitchboard } from "./support/fake-switchboard.mjs";
import { runChaos } from "./support/chaos.mjs";
import { startChaosProxy } from "./support/chaos-proxy.mjs";

function until(pred, ms = 5000, what = "condition") {
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
  for (const e of ["open", "resumed", "reconnecting", "close"]) c.on(e, (x) => events.push(e));
  c.on("message", (d) => messages.push(d));
  return { events, messages };
}

const fast = { reconnect: { baseMs: 20, maxMs: 200 } };

test("round trip, text and binary, over a real socket", async () => {
  const srv = await startFakeSwitchboard();
  const c = new SwitchboardClient(srv.url, fast);
  const { events, messages } = record(c);
  try {
    c.send("hello");
    c.send(new Uint8Array([0, 1, 255]));
    await until(() => messages.length === 2, 5000, "echoes");
    assert.equal(messages[0], "hello");
    assert.deepEqual([...new Uint8Array(messages[1])], [0, 1, 255]);
    assert.deepEqual(events, ["open"]);
    assert.equal(c.mode, "resume");
    assert.deepEqual(srv.session(c.connectionId).invoked.map((x) => typeof x === "string" ? x : [...x]), ["hello", [0, 1, 255]]);
  } finally {
    c.close();
    await srv.close();
  }
});

test("a dropped socket resumes the same connection; messages both ways survive", async () => {
  const srv = await startFakeSwitchboard();
  const c = new SwitchboardClient(srv.url, fast);
  const { events, messages } = record(c);
  try {
    await until(() => c.state === "open");
    const id = c.connectionId;
    srv.send(id, "before");
    await until(() => messages.length === 1);
    srv.dropAll();
    srv.send(id, "during"); // buffered by the detached session
    c.send("queued");       // held by the client
    await until(() => messages.length === 3, 5000, "replay and echo");
    assert.deepEqual(messages, ["before", "during", "queued"]);
    assert.deepEqual(events, ["open", "reconnecting", "resumed"]);
    assert.equal(c.connectionId, id);
    assert.equal(srv.log.connects, 1);
  } finally {
    c.close();
    await srv.close();
  }
});

test("409 while the server still holds the old socket: retried until it lets go, then resumed", async () => {
  const srv = await startFakeSwitchboard();
  const proxy = await startChaosProxy({ port: srv.port });
  const c = new SwitchboardClient(proxy.url, fast);
  const { events, messages } = record(c);
  try {
    await until(() => c.state === "open");
    const id = c.connectionId;
    proxy.strandAll(); // the client sees its socket die; the server's stays attached
    srv.send(id, "kept");
    await sleep(400);
    const refused = srv.log.handshakes.length - 1;
    assert.ok(refused >= 2, `resume attempts refused with 409: ${refused}`);
    assert.equal(c.state, "reconnecting");
    proxy.releaseStranded(); // now the server notices: the session detaches
    await until(() => events.includes("resumed"), 5000, "resumed");
    await until(() => messages.length === 1);
    assert.deepEqual(messages, ["kept"]);
    assert.equal(c.connectionId, id);
    assert.equal(events.filter((e) => e === "open").length, 1);
  } finally {
    c.close();
    await proxy.close();
    await srv.close();
  }
});

test("heartbeat timeout: the client abandons the socket (close code 4000) and reconnects", async () => {
  const srv = await startFakeSwitchboard({ answerHeartbeats: false });
  const c = new SwitchboardClient(srv.url, { ...fast, heartbeat: { intervalMs: 100, timeoutMs: 100 } });
  const opens = [];
  c.on("open", (e) => opens.push(e));
  try {
    await until(() => opens.length === 1);
    const first = c.connectionId;
    await until(() => srv.log.disconnects.length === 1, 5000, "the server to see the close");
    assert.equal(srv.log.disconnects[0].code, 4000);
    // docs/protocol.md today: any close frame ends the session, so this is a fresh one.
    await until(() => opens.length === 2, 5000, "a new session");
    assert.notEqual(c.connectionId, first);
    assert.equal(opens[1].sessionLost, true);
  } finally {
    c.close();
    await srv.close();
  }
});

test("the session window expired: a fresh connection, 'open' again with sessionLost", async () => {
  const srv = await startFakeSwitchboard();
  const c = new SwitchboardClient(srv.url, fast);
  const opens = [];
  c.on("open", (e) => opens.push(e));
  try {
    await until(() => c.state === "open");
    const first = c.connectionId;
    srv.forgetSessions();
    await until(() => opens.length === 2, 5000, "second open");
    assert.notEqual(c.connectionId, first);
    assert.equal(opens[1].sessionLost, true);
    assert.equal(opens[1].previousConnectionId, first);
  } finally {
    c.close();
    await srv.close();
  }
});

test("resume: false: a plain WebSocket with reconnects against any server", async () => {
  const srv = await startFakeSwitchboard({ resume: false });
  const c = new SwitchboardClient(srv.url, { ...fast, resume: false });
  const { events, messages } = record(c);
  try {
    c.send("raw");
    await until(() => messages.length === 1);
    assert.equal(messages[0], "raw");
    assert.equal(c.mode, "plain");
    srv.dropAll();
    await until(() => events.filter((e) => e === "open").length === 2, 5000, "reopen");
    c.send("again");
    await until(() => messages.length === 2);
    assert.deepEqual(events, ["open", "reconnecting", "open"]);
    assert.deepEqual(srv.log.handshakes.map((h) => h.offered), [[], []]);
  } finally {
    c.close();
    await srv.close();
  }
});

test("a server that answers another offered protocol (e.g. a bearer echo): plain mode", async () => {
  const srv = await startFakeSwitchboard({ resume: false, plainProtocol: (offered) => offered.find((p) => p.startsWith("bearer.")) ?? null });
  const c = new SwitchboardClient(srv.url, { ...fast, getToken: () => "t0k" });
  const { messages } = record(c);
  try {
    c.send("raw");
    await until(() => messages.length === 1);
    assert.equal(c.mode, "plain");
    assert.deepEqual(srv.log.handshakes[0].offered, ["switchboard.v1", "bearer.t0k"]);
  } finally {
    c.close();
    await srv.close();
  }
});

test("offering switchboard.v1 to a server that selects nothing fails the handshake; resume.fallback retries plain", async () => {
  const srv = await startFakeSwitchboard({ resume: false });
  // Without fallback: WebSocket implementations (Node's, Chrome's) refuse a 101 that selects
  // none of the offered subprotocols, so every attempt fails.
  const strict = new SwitchboardClient(srv.url, { ...fast, reconnect: { baseMs: 10, attempts: 2 } });
  const closed = new Promise((r) => strict.on("close", r));
  assert.equal((await closed).gaveUp, true);
  const c = new SwitchboardClient(srv.url, { ...fast, resume: { fallback: true } });
  const { events, messages } = record(c);
  try {
    c.send("raw");
    await until(() => messages.length === 1, 5000, "echo");
    assert.equal(c.mode, "plain");
    assert.deepEqual(events, ["reconnecting", "open"]);
    srv.dropAll();
    await until(() => events.length === 4, 5000, "reopen");
    assert.deepEqual(events, ["reconnecting", "open", "reconnecting", "open"], "stays plain: no failed attempt first");
  } finally {
    c.close();
    await srv.close();
  }
});

test("server close 1008: no reconnect", async () => {
  const srv = await startFakeSwitchboard();
  const c = new SwitchboardClient(srv.url, fast);
  const closes = [];
  c.on("close", (e) => closes.push(e));
  try {
    await until(() => c.state === "open");
    srv.closeConnection(c.connectionId, 1008, "rate limit exceeded");
    await until(() => closes.length === 1);
    assert.equal(closes[0].code, 1008);
    assert.equal(closes[0].reason, "rate limit exceeded");
    await sleep(300);
    assert.equal(srv.log.handshakes.length, 1);
  } finally {
    await srv.close();
  }
});

test("chaos: 10,000 messages each way through a proxy that keeps cutting, exactly once, in order", { timeout: 60000 }, async () => {
  const srv = await startFakeSwitchboard();
  let session = null;
  try {
    const stats = await runChaos({
      target: { host: "127.0.0.1", port: srv.port },
      push: async (id, text) => { session ??= srv.session(id); assert.ok(srv.send(id, text)); },
      invoked: () => session.invoked,
      paceMs: 40, // spreads the flow over ~4 s of cuts
      deadlineMs: 45000,
    });
    console.log(`# chaos (fake gateway): ${JSON.stringify(stats)}`);
  } finally {
    await srv.close();
  }
});
