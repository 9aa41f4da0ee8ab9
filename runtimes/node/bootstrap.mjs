// switchboard's bundled AWS Lambda runtime for Node.js 20+ (standard library only).
//
// Run by switchboard for `kind = "lambda"` functions with `runtime = "node"` and no
// `command`. It speaks the Lambda Runtime API at AWS_LAMBDA_RUNTIME_API the way AWS's own
// runtime does: import the `_HANDLER` (`file.export`: `file.mjs`, `file.js` or `file.cjs`
// relative to LAMBDA_TASK_ROOT; ES modules and CommonJS), then loop: GET the next event,
// call `handler(event, context)` (async, promise-returning or callback-style), POST the
// JSON of its result or the error. An import failure is posted to /init/error and the
// process exits 1. An exception thrown outside the handler's promise ends the process, as
// on AWS.
//
// One keep-alive socket carries every call, so a warm invocation costs two small requests
// on an open connection.

import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { pathToFileURL } from "node:url";

const RUNTIME = "/2018-06-01/runtime";
const api = process.env.AWS_LAMBDA_RUNTIME_API ?? "";
const colon = api.lastIndexOf(":");
const HOST = api.slice(0, colon);
const PORT = Number(api.slice(colon + 1));

// A minimal HTTP/1.1 client on one keep-alive socket. Hand-rolled rather than node:http,
// whose client machinery costs more than the rest of a warm invocation; the server is
// switchboard's own runtime API, which always frames bodies with Content-Length.
class RuntimeApi {
  constructor(host, port) {
    this.host = host;
    this.port = port;
    this.socket = null;
    this.buffer = Buffer.alloc(0);
    this.pending = null; // { resolve, reject } of the request in flight
  }

  connect() {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ host: this.host, port: this.port, noDelay: true });
      socket.once("connect", () => {
        socket.removeListener("error", reject);
        socket.on("data", (chunk) => this.onData(chunk));
        const fail = (err) => this.onClose(socket, err);
        socket.on("error", fail);
        socket.on("close", () => fail(new Error("the runtime API closed the connection")));
        this.socket = socket;
        this.buffer = Buffer.alloc(0);
        resolve();
      });
      socket.once("error", reject);
    });
  }

  onClose(socket, err) {
    if (this.socket !== socket) return;
    this.socket = null;
    const pending = this.pending;
    this.pending = null;
    if (pending) pending.reject(err);
  }

  onData(chunk) {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    if (!this.pending) return;
    const end = this.buffer.indexOf("\r\n\r\n");
    if (end < 0) return;
    const lines = this.buffer.toString("latin1", 0, end).split("\r\n");
    const status = Number(lines[0].split(" ")[1]);
    const headers = {};
    for (let i = 1; i < lines.length; i++) {
      const colon = lines[i].indexOf(":");
      if (colon > 0) headers[lines[i].slice(0, colon).trim().toLowerCase()] = lines[i].slice(colon + 1).trim();
    }
    const length = Number(headers["content-length"] ?? 0);
    if (this.buffer.length < end + 4 + length) return;
    const body = this.buffer.subarray(end + 4, end + 4 + length);
    this.buffer = this.buffer.subarray(end + 4 + length);
    const pending = this.pending;
    this.pending = null;
    if ((headers.connection ?? "").toLowerCase() === "close") this.socket?.destroy();
    pending.resolve({ status, headers, body });
  }

  // Retries once on a fresh connection when the kept-alive one turns out to be closed; a
  // second failure propagates (the API is gone, so the worker should end).
  async call(method, urlPath, body, extraHeaders = "") {
    const payload = body === undefined ? Buffer.alloc(0) : Buffer.from(body);
    const head = `${method} ${urlPath} HTTP/1.1\r\nHost: ${this.host}:${this.port}\r\n${extraHeaders}Content-Length: ${payload.length}\r\n\r\n`;
    for (let attempt = 0; ; attempt++) {
      try {
        if (!this.socket) await this.connect();
        return await new Promise((resolve, reject) => {
          this.pending = { resolve, reject };
          this.socket.write(payload.length ? Buffer.concat([Buffer.from(head, "latin1"), payload]) : head);
        });
      } catch (err) {
        this.socket?.destroy();
        this.socket = null;
        if (attempt > 0) throw err;
      }
    }
  }
}

const runtimeApi = new RuntimeApi(HOST, PORT);

function call(method, urlPath) {
  return runtimeApi.call(method, urlPath);
}

function post(urlPath, payload, errorType) {
  let headers = "Content-Type: application/json\r\n";
  if (errorType) headers += `Lambda-Runtime-Function-Error-Type: ${errorType.replace(/[\r\n]/g, " ")}\r\n`;
  return runtimeApi.call("POST", urlPath, payload, headers);
}

function errorBody(err, fallbackType) {
  const e = err instanceof Error ? err : new Error(String(err));
  return {
    errorType: fallbackType ?? e.name ?? "Error",
    errorMessage: e.message ?? String(err),
    stackTrace: typeof e.stack === "string" ? e.stack.split("\n").slice(1).map((l) => l.trim()) : [],
  };
}

class InitError extends Error {
  constructor(type, message) {
    super(message);
    this.type = type;
  }
}

async function loadHandler() {
  const spec = process.env._HANDLER ?? "";
  const dot = spec.lastIndexOf(".");
  if (dot <= 0 || dot === spec.length - 1) {
    throw new InitError("Runtime.MalformedHandlerName", `Bad handler '${spec}': expected file.export`);
  }
  const modulePath = spec.slice(0, dot);
  const exportName = spec.slice(dot + 1);
  const root = process.env.LAMBDA_TASK_ROOT || process.cwd();
  const file = [".mjs", ".js", ".cjs"]
    .map((ext) => path.resolve(root, modulePath + ext))
    .find((f) => fs.existsSync(f));
  if (!file) {
    throw new InitError(
      "Runtime.ImportModuleError",
      `Cannot find module '${modulePath}' (.mjs, .js or .cjs) in ${root}`,
    );
  }
  // A module that throws while loading is reported with its own error type, as on AWS.
  const mod = await import(pathToFileURL(file).href);
  const handler = mod[exportName] ?? mod.default?.[exportName];
  if (typeof handler !== "function") {
    throw new InitError("Runtime.HandlerNotFound", `${modulePath}.${exportName} is undefined or not exported`);
  }
  return handler;
}

function runHandler(handler, event, context) {
  // Callback-style handlers take three parameters; the first of the callback or the
  // returned promise to settle decides, as on AWS.
  if (handler.length >= 3) {
    return new Promise((resolve, reject) => {
      const ret = handler(event, context, (err, value) => (err ? reject(err) : resolve(value)));
      if (ret && typeof ret.then === "function") ret.then(resolve, reject);
    });
  }
  return handler(event, context);
}

const fixed = {
  functionName: process.env.AWS_LAMBDA_FUNCTION_NAME ?? "",
  functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION ?? "$LATEST",
  memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE ?? "128",
  logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME ?? "",
  logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME ?? "",
};

async function main() {
  let handler;
  try {
    handler = await loadHandler();
  } catch (err) {
    const body = errorBody(err, err instanceof InitError ? err.type : undefined);
    console.error(`[ERROR] ${body.errorType}: ${body.errorMessage}`);
    try {
      await post(`${RUNTIME}/init/error`, JSON.stringify(body), body.errorType);
    } catch {
      // The API is gone; exiting is all that is left.
    }
    process.exit(1);
  }

  for (;;) {
    const next = await call("GET", `${RUNTIME}/invocation/next`);
    if (next.status !== 200) {
      console.error(`runtime API answered ${next.status} to next; exiting`);
      process.exit(1);
    }
    const requestId = next.headers["lambda-runtime-aws-request-id"];
    const deadline = Number(next.headers["lambda-runtime-deadline-ms"] ?? 0);
    const traceId = next.headers["lambda-runtime-trace-id"];
    if (traceId) process.env._X_AMZN_TRACE_ID = traceId;
    const context = {
      ...fixed,
      awsRequestId: requestId,
      invokedFunctionArn: next.headers["lambda-runtime-invoked-function-arn"],
      callbackWaitsForEmptyEventLoop: true,
      getRemainingTimeInMillis: () => Math.max(deadline - Date.now(), 0),
    };
    let payload;
    let error;
    try {
      const result = await runHandler(handler, JSON.parse(next.body.toString("utf8")), context);
      payload = JSON.stringify(result === undefined ? null : result);
    } catch (err) {
      error = errorBody(err);
      console.error(`[ERROR] ${error.errorType}: ${error.errorMessage}\n${error.stackTrace.join("\n")}`);
    }
    if (error === undefined) {
      await post(`${RUNTIME}/invocation/${requestId}/response`, payload);
    } else {
      await post(`${RUNTIME}/invocation/${requestId}/error`, JSON.stringify(error), error.errorType);
    }
  }
}

main().catch((err) => {
  console.error(`runtime loop failed: ${err?.stack ?? err}`);
  process.exit(1);
});
