// Starting the real gateway binary for tests: shared by the browser tests (harness.mjs) and
// the JavaScript client's tests (clients/js/test), which need no browser.
import { spawn, spawnSync } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = process.env.SWITCHBOARD_BIN ?? path.join(ROOT, "target/debug/switchboard");

/** Starts `switchboard ARGS...`; resolves when it prints where it listens. */
export function startGateway(args, env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, args, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let log = "";
    child.stderr.on("data", (d) => { log += d; });
    const timer = setTimeout(() => { child.kill("SIGKILL"); reject(new Error("gateway did not start:\n" + log)); }, 30000);
    child.on("exit", (code) => { clearTimeout(timer); reject(new Error(`gateway exited (${code}):\n${log}`)); });
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      const m = line.match(/listening on (wss?):\/\/([^/]+)\/ \(management http:\/\/([^/]+)\/\)/);
      if (!m) return;
      clearTimeout(timer);
      resolve({
        child,
        ws: `${m[1]}://${m[2]}/`,
        http: `${m[1] === "wss" ? "https" : "http"}://${m[2]}/`,
        management: `http://${m[3]}/`,
        log: () => log,
        async stop() {
          if (child.exitCode !== null) return;
          const done = new Promise((r) => child.once("exit", r));
          child.kill("SIGTERM");
          await Promise.race([done, new Promise((r) => setTimeout(r, 15000))]);
          if (child.exitCode === null) child.kill("SIGKILL");
        },
      });
    });
  });
}

/** Writes `toml` as switchboard.toml in a new temporary directory; returns its paths. */
export function tempConfig(toml) {
  const dir = mkdtempSync(path.join(tmpdir(), "switchboard-test-"));
  const file = path.join(dir, "switchboard.toml");
  writeFileSync(file, toml);
  return { dir, file, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Whether the gateway binary knows the `[resume]` section (switchboard.v1). */
export function gatewaySupportsResume() {
  const cfg = tempConfig("[resume]\nenabled = true\n");
  try {
    const r = spawnSync(BIN, ["check-config", "--config", cfg.file], { stdio: "ignore" });
    return r.status === 0;
  } catch {
    return false;
  } finally {
    cfg.remove();
  }
}
