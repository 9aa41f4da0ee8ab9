// The JavaScript client against three real gateway processes sharing a real Redis, behind
// a proxy that sends every new connection to the next node: each resume lands on another
// node and the session moves there through the backplane (docs/protocol.md, "Resuming on
// another node").
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { runChaos } from "./support/chaos.mjs";
import { startFunction, gatewayConfig } from "./support/function-server.mjs";
import { startGateway, tempConfig, gatewaySupportsResume } from "../../../tests/browser/gateway.mjs";

const skip = gatewaySupportsResume() ? false : "the gateway binary has no [resume] (build it: cargo build)";

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/** redis-server on a free port, without persistence; resolves once it answers. */
async function startRedis() {
  if (spawnSync("redis-server", ["--version"], { stdio: "ignore" }).status !== 0) {
    throw new Error("redis-server is not installed: run scripts/install-deps.sh");
  }
  const port = await freePort();
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => { s.end(); resolve(true); });
      s.on("error", () => resolve(false));
    });
    if (ok) break;
    await sleep(50);
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: () => new Promise((r) => { if (child.exitCode !== null) return r(); child.once("exit", r); child.kill("SIGKILL"); }),
  };
}

function nodeConfig(i, redisUrl, fnPort) {
  return gatewayConfig(fnPort, {
    windowSecs: 60,
    server: `node_id = "js-node-${i}"`,
    extra: `
[cluster]
backplane = "redis"
urls = ["${redisUrl}"]
heartbeat_secs = 1
node_ttl_secs = 3
op_timeout_ms = 1000
`,
  });
}

let redis, fn, nodes, configs;
before(async () => {
  if (skip) return;
  redis = await startRedis();
  fn = await startFunction();
  configs = [1, 2, 3].map((i) => tempConfig(nodeConfig(i, redis.url, fn.port)));
  nodes = await Promise.all(configs.map((c) => startGateway(["serve", "--config", c.file])));
  for (const gw of nodes) {
    for (let i = 0; ; i++) {
      const r = await fetch(`${gw.management}readyz`).catch(() => null);
      if (r?.status === 200) break;
      if (i > 200) throw new Error(`${gw.management} never became ready`);
      await sleep(50);
    }
  }
});
after(async () => {
  await Promise.all((nodes ?? []).map((gw) => gw.stop()));
  await fn?.close();
  await redis?.stop();
  for (const c of configs ?? []) c.remove();
});

test("chaos across three nodes: 10,000 messages each way, every reconnect on the next node, exactly once, in order", { skip, timeout: 90000 }, async () => {
  let id = null;
  // Through the third node's management API: each send goes to the connection's home
  // node, then on to wherever the session is.
  const mgmt = nodes[2].management;
  const stats = await runChaos({
    target: nodes.map((gw) => { const u = new URL(gw.ws); return { host: u.hostname, port: Number(u.port) }; }),
    push: async (cid, text) => {
      id = cid;
      const res = await fetch(`${mgmt}@connections/${encodeURIComponent(cid)}`, { method: "POST", body: text, headers: { "content-type": "text/plain" } });
      if (res.status !== 200) throw new Error(`POST @connections/${cid}: ${res.status} ${await res.text()}`);
    },
    invoked: () => fn.of(id, "MESSAGE").map((e) => e.body),
    paceMs: 5,
    deadlineMs: 70000,
  });
  assert.equal(fn.of(id, "CONNECT").length, 1, "one $connect: every reconnect resumed");
  assert.ok(stats.connections >= 4, `${stats.connections} sockets: the session moved between nodes`);
  console.log(`# chaos (three nodes): ${JSON.stringify(stats)}`);
});
