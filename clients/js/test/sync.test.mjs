// The example apps serve a copy of switchboard.js; clients/js/sync-examples.sh makes it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const root = path.resolve(here, "../..");
const source = readFileSync(path.join(here, "switchboard.js"), "utf8");
const copies = readFileSync(path.join(here, "sync-examples.sh"), "utf8").match(/^for dest in (.+); do$/m)[1].split(/\s+/);

test("the sync script names the copies", () => {
  assert.ok(copies.includes("examples/chat/public/switchboard.js"));
});

for (const copy of copies) {
  test(`${copy} is the same as clients/js/switchboard.js`, () => {
    const got = readFileSync(path.join(root, copy), "utf8");
    assert.ok(got === source, `${copy} differs from clients/js/switchboard.js: run clients/js/sync-examples.sh`);
  });
}
