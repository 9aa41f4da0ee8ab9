// A TCP proxy that cuts every connection through it at random moments: the network failing
// under a WebSocket client. Cuts alternate between a FIN (destroy) and a RST
// (resetAndDestroy), on both sides at once, so neither end gets a close frame.
import net from "node:net";

/**
 * startChaosProxy({host, port}) -> {port, url, start({minMs, maxMs}), stop(), cuts, close()}.
 * Cutting runs from start() until stop(); until then the proxy just forwards. `target` may
 * also be an array: each new connection goes to the next one in turn (a load balancer
 * without affinity).
 */
export function startChaosProxy(target, { random = Math.random } = {}) {
  const targets = Array.isArray(target) ? target : [target];
  const pairs = new Set();
  let timer = null;
  const stats = { cuts: 0, connections: 0, killed: 0 };

  const server = net.createServer((client) => {
    const to = targets[stats.connections % targets.length];
    stats.connections++;
    const upstream = net.connect(to.port, to.host ?? "127.0.0.1");
    const pair = { client, upstream };
    pairs.add(pair);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const kill = (how) => {
      if (!pairs.delete(pair)) return;
      for (const s of [client, upstream]) {
        if (how === "rst" && typeof s.resetAndDestroy === "function" && s.readyState !== "opening") s.resetAndDestroy();
        else s.destroy();
      }
    };
    pair.kill = kill;
    client.on("error", () => kill("fin"));
    upstream.on("error", () => kill("fin"));
    client.on("close", () => kill("fin"));
    upstream.on("close", () => kill("fin"));
    client.pipe(upstream);
    upstream.pipe(client);
  });

  const stranded = new Set();
  /**
   * Cuts only the client's side: the server keeps a socket that nobody reads or writes (a
   * half-dead path), until releaseStranded().
   */
  function strandAll() {
    for (const p of [...pairs]) {
      pairs.delete(p);
      p.client.unpipe(p.upstream);
      p.upstream.unpipe(p.client);
      stranded.add(p.upstream);
      p.client.destroy();
    }
  }
  function releaseStranded() {
    for (const s of stranded) s.destroy();
    stranded.clear();
  }

  function cutAll() {
    stats.cuts++;
    const how = stats.cuts % 2 ? "fin" : "rst";
    for (const p of [...pairs]) { stats.killed++; p.kill(how); }
  }

  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      resolve({
        port,
        url: `ws://127.0.0.1:${port}/`,
        stats,
        cutAll,
        strandAll,
        releaseStranded,
        start({ minMs = 50, maxMs = 400 } = {}) {
          const next = () => {
            timer = setTimeout(() => { cutAll(); next(); }, minMs + random() * (maxMs - minMs));
          };
          if (!timer) next();
        },
        stop() { clearTimeout(timer); timer = null; },
        close() {
          clearTimeout(timer); timer = null;
          for (const p of [...pairs]) p.kill("fin");
          releaseStranded();
          return new Promise((r) => server.close(() => r()));
        },
      });
    });
  });
}
