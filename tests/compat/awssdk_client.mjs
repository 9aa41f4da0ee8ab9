#!/usr/bin/env node
// Drive switchboard's @connections API with the real AWS SDK for JavaScript v3
// (@aws-sdk/client-apigatewaymanagementapi, pinned in package.json). Node 20 or later.
//
// Same interface as boto3_client.py:
//   awssdk_client.mjs [OPTIONS] COMMAND [-- COMMAND ...]
//   awssdk_client.mjs [OPTIONS]            (commands from standard input, one a line)
// COMMAND: `post ID DATA` (DATA sent as its UTF-8 bytes), `get ID`, `delete ID`. On standard
// input a line is split on blanks, with '...' or "..." quoting (backslash escapes inside
// double quotes); blank lines and lines starting with '#' are skipped.
// OPTIONS, each falling back to the environment variable named:
//   --endpoint URL            SWITCHBOARD_ENDPOINT or AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI
//   --region REGION           AWS_REGION or AWS_DEFAULT_REGION, else us-east-1
//   --access-key-id ID        AWS_ACCESS_KEY_ID
//   --secret-access-key KEY   AWS_SECRET_ACCESS_KEY
//   --max-attempts N          attempts per command including retries, default 1
// Prints one JSON line per command:
//   {"ok": true, "status": 200, "body": {...}}
//   {"ok": false, "status": 410, "error": "GoneException", "message": "..."}
// `error` is the SDK's e.name; a failure before any HTTP answer has status null. Exit
// status 0 whatever the API answered; 1 only for a usage error.

import { createInterface } from "node:readline";

const USAGE = `usage: awssdk_client.mjs [--endpoint URL] [--region R] [--access-key-id ID]
       [--secret-access-key KEY] [--max-attempts N] [COMMAND [-- COMMAND ...]]
COMMAND: post ID DATA | get ID | delete ID   (none: one command a line on stdin)`;

const OPTIONS = {
  "--endpoint": "endpoint",
  "--region": "region",
  "--access-key-id": "accessKeyId",
  "--secret-access-key": "secretAccessKey",
  "--max-attempts": "maxAttempts",
};
const ARITY = { post: 2, get: 1, delete: 1 };

class UsageError extends Error {}

function parseArgs(argv) {
  const opts = {};
  let i = 0;
  while (i < argv.length && argv[i].startsWith("--") && argv[i] !== "--") {
    const eq = argv[i].indexOf("=");
    const name = eq < 0 ? argv[i] : argv[i].slice(0, eq);
    if (!(name in OPTIONS)) throw new UsageError(`unknown option ${name}`);
    let value;
    if (eq < 0) {
      i += 1;
      if (i >= argv.length) throw new UsageError(`${name} needs a value`);
      value = argv[i];
    } else {
      value = argv[i].slice(eq + 1);
    }
    opts[OPTIONS[name]] = value;
    i += 1;
  }
  const commands = [];
  let current = [];
  for (const arg of argv.slice(i)) {
    if (arg === "--") {
      if (current.length) commands.push(current);
      current = [];
    } else {
      current.push(arg);
    }
  }
  if (current.length) commands.push(current);
  commands.forEach(checkCommand);
  return { opts, commands };
}

function checkCommand(command) {
  const arity = ARITY[command[0]];
  if (arity === undefined || command.length !== 1 + arity) {
    throw new UsageError(`bad command: ${command.join(" ") || "(empty)"}`);
  }
}

function settings(opts) {
  const env = process.env;
  const endpoint =
    opts.endpoint || env.SWITCHBOARD_ENDPOINT || env.AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI;
  const region = opts.region || env.AWS_REGION || env.AWS_DEFAULT_REGION || "us-east-1";
  const accessKeyId = opts.accessKeyId || env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = opts.secretAccessKey || env.AWS_SECRET_ACCESS_KEY;
  if (!endpoint || !accessKeyId || !secretAccessKey) {
    throw new UsageError("an endpoint, an access key id and a secret access key are required");
  }
  const maxAttempts = Number(opts.maxAttempts ?? "1");
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new UsageError("--max-attempts takes a number of at least 1");
  }
  return { endpoint, region, credentials: { accessKeyId, secretAccessKey }, maxAttempts };
}

// Splits a line like a shell: blanks separate words, quotes group them.
function splitLine(line) {
  const words = [];
  let word = null;
  let quote = null;
  for (let i = 0; i < line.length; i += 1) {
    const c = line[i];
    if (quote) {
      if (c === quote) quote = null;
      else if (c === "\\" && quote === '"' && i + 1 < line.length) word += line[++i];
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      word ??= "";
    } else if (c === " " || c === "\t") {
      if (word !== null) words.push(word);
      word = null;
    } else if (c === "\\" && i + 1 < line.length) {
      word = (word ?? "") + line[++i];
    } else {
      word = (word ?? "") + c;
    }
  }
  if (quote) throw new UsageError(`unclosed quote in line: ${line}`);
  if (word !== null) words.push(word);
  return words;
}

async function run(sdk, client, command) {
  const [verb, ConnectionId, data] = command;
  try {
    let resp;
    if (verb === "post") {
      resp = await client.send(
        new sdk.PostToConnectionCommand({ ConnectionId, Data: new TextEncoder().encode(data) }),
      );
    } else if (verb === "get") {
      resp = await client.send(new sdk.GetConnectionCommand({ ConnectionId }));
    } else {
      resp = await client.send(new sdk.DeleteConnectionCommand({ ConnectionId }));
    }
    const { $metadata, ...body } = resp;
    // Dates become toISOString() strings, like boto3_client.py writes them.
    return { ok: true, status: $metadata?.httpStatusCode ?? null, body: JSON.parse(JSON.stringify(body)) };
  } catch (e) {
    return {
      ok: false,
      status: e?.$metadata?.httpStatusCode ?? null,
      error: e?.name ?? String(e),
      message: e?.message ?? null,
    };
  }
}

// Keys sorted, as Python's json.dumps(sort_keys=True) writes them, so both clients print
// the same line for the same answer.
function sortedJson(value) {
  if (Array.isArray(value)) return `[${value.map(sortedJson).join(", ")}]`;
  if (value && typeof value === "object") {
    const parts = Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}: ${sortedJson(value[k])}`);
    return `{${parts.join(", ")}}`;
  }
  return JSON.stringify(value ?? null);
}

async function* stdinCommands() {
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const raw of lines) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const command = splitLine(line);
    checkCommand(command);
    yield command;
  }
}

async function main(argv) {
  try {
    const { opts, commands } = parseArgs(argv);
    const { maxAttempts, ...config } = settings(opts);
    // The SDK warns on stderr that it will soon need Node 22; the tests run on Node 20.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
    const sdk = await import("@aws-sdk/client-apigatewaymanagementapi");
    const client = new sdk.ApiGatewayManagementApiClient({ ...config, maxAttempts });
    const source = commands.length ? commands : stdinCommands();
    for await (const command of source) {
      process.stdout.write(`${sortedJson(await run(sdk, client, command))}\n`);
    }
    client.destroy();
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`awssdk_client: ${e.message}\n${USAGE}\n`);
      return 1;
    }
    throw e;
  }
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
