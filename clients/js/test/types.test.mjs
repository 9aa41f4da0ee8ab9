// The TypeScript declarations compile and describe the API (test/types-check.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const tsc = path.join(dir, "node_modules/.bin/tsc");

test("switchboard.d.ts type-checks against its usage", { skip: existsSync(tsc) ? false : "typescript not installed (npm install in clients/js)" }, () => {
  const r = spawnSync(tsc, [
    "--noEmit", "--strict", "--target", "es2022", "--module", "nodenext", "--moduleResolution", "nodenext",
    "--lib", "es2022,dom", "--skipLibCheck", "false", "test/types-check.ts",
  ], { cwd: dir, encoding: "utf8" });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
