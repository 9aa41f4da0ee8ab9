// The chaos scenario, shared by the fake-server and the real-gateway tests: a client behind a
// proxy that keeps cutting its TCP connection, while `n` numbered messages flow each way.
// Asserts each arrives exactly once and in order: server -> client ("s<i>", pushed by
// `push`), client -> server ("c<i>", whose invocations `invoked()` lists, and whose echo
// comes back).
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { SwitchboardClient } from "../../switchboard.js";
import { startChaosProxy } from "./chaos-proxy.mjs";

export async function runChaos({
  target,             // {host, port} of the WebSocket server
  path = "/",
  push,               // async (connectionId, text) => void: a server-originated send
  invoked,            // () => string[]: client messages the server invoked, in order
  n = 10000,
  cutMinMs = 50,
  cutMaxMs = 400,
  deadlineMs = 50000,
  paceMs = 10,        // pause after each 100 messages, each direction
  clientOptions = {},
  log = () => {},
}) {
  const proxy = await startChaosProxy(target);
  const counts = { open: 0, resumed: 0, reconnecting: 0, errors: 0 };
  let nextS = 1, nextC = 1;
  const problems = [];
  const client = new SwitchboardClient(`ws://127.0.0.1:${proxy.port}${path}`, {
    reconnect: { baseMs: 10, maxMs: 200, jitter: 0.5 },
    offlineQueue: { maxMessages: Infinity },
    connectTimeoutMs: 3000,
    heartbeat: { intervalMs: 1000, timeoutMs: 2000 },
    ...clientOptions,
  });
  let done;
  const finished = new Promise((r) => { done = r; });
  client.on("open", () => { counts.open++; });
  client.on("resumed", () => { counts.resumed++; });
  client.on("reconnecting", () => { counts.reconnecting++; });
  client.on("error", () => { counts.errors++; });
  client.on("close", (e) => { problems.push(`closed: ${JSON.stringify(e)}`); done(); });
  client.on("message", (data) => {
    if (typeof data !== "string") { problems.push("binary message"); return; }
    const i = Number(data.slice(1));
    if (data[0] === "s") {
      if (i !== nextS) problems.push(`server message ${data} while expecting s${nextS}`);
      nextS = i + 1;
    } else if (data[0] === "c") {
      if (i !== nextC) problems.push(`echo ${data} while expecting c${nextC}`);
      nextC = i + 1;
    } else problems.push(`unexpected message ${data.slice(0, 50)}`);
    if (problems.length > 20) done();
    if (nextS > n && nextC > n) done();
  });

  const t0 = Date.now();
  try {
    await new Promise((resolve, reject) => {
      client.once("open", resolve);
      client.once("close", (e) => reject(new Error(`closed before open: ${JSON.stringify(e)}`)));
    });
    const id = client.connectionId;
    assert.ok(id, "the hello names the connection");
    proxy.start({ minMs: cutMinMs, maxMs: cutMaxMs });

    // Client -> server: batches spread over the run, sent whatever the connection's state.
    const sending = (async () => {
      for (let i = 1; i <= n; ) {
        if (client.state === "closed") return;
        for (let k = 0; k < 100 && i <= n; k++, i++) assert.equal(client.send(`c${i}`), true);
        await sleep(paceMs);
      }
    })();
    // Server -> client: one send after another (their order is the order they are sent in).
    const pushing = (async () => {
      for (let i = 1; i <= n; i++) {
        if (client.state === "closed") return;
        await push(id, `s${i}`);
        if (i % 100 === 0) await sleep(paceMs);
      }
    })();
    await Promise.all([sending, pushing]);
    log(`all sent after ${Date.now() - t0} ms; cuts so far ${proxy.stats.cuts}`);
    const timer = setTimeout(() => { problems.push(`deadline: got s${nextS - 1} c${nextC - 1}`); done(); }, Math.max(1000, deadlineMs - (Date.now() - t0)));
    await finished;
    clearTimeout(timer);
    proxy.stop();
    log(`done after ${Date.now() - t0} ms: ${JSON.stringify({ ...counts, ...proxy.stats })}`);

    assert.deepEqual(problems, []);
    assert.equal(nextS, n + 1);
    assert.equal(nextC, n + 1);
    // Each client message invoked the function exactly once, in order.
    const inv = invoked();
    const expected = Array.from({ length: n }, (_, k) => `c${k + 1}`);
    if (inv.length !== n || inv.some((x, k) => x !== expected[k])) {
      const firstBad = inv.findIndex((x, k) => x !== expected[k]);
      assert.fail(`invocations: ${inv.length} (want ${n}); first wrong at ${firstBad}: ${inv[firstBad]}`);
    }
    // One session throughout: resumed each time, never a fresh connection.
    assert.equal(counts.open, 1, "never lost the session");
    assert.equal(client.connectionId, id);
    assert.ok(proxy.stats.cuts >= 3, `the proxy cut ${proxy.stats.cuts} times`);
    assert.ok(counts.resumed >= 1);
    return { ...counts, ...proxy.stats, ms: Date.now() - t0 };
  } finally {
    proxy.stop();
    if (client.state !== "closed") client.close();
    await proxy.close();
  }
}
