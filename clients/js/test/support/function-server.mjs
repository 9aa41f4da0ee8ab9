// An HTTP function for the real gateway's tests (`kind = "http"`), shared by the
// single-node and the cluster tests.
import http from "node:http";

/** An HTTP function: records events per connection, answers messages with their body. */
export function startFunction() {
  const events = new Map(); // connectionId -> [{type, body}]
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const ev = JSON.parse(Buffer.concat(chunks).toString());
      const rc = ev.requestContext;
      const list = events.get(rc.connectionId) ?? [];
      events.set(rc.connectionId, list);
      list.push({ type: rc.eventType, body: ev.body, base64: ev.isBase64Encoded, code: rc.disconnectStatusCode, reason: rc.disconnectReason });
      res.setHeader("content-type", "application/json");
      if (rc.eventType === "MESSAGE") {
        res.end(JSON.stringify({ statusCode: 200, body: ev.body, isBase64Encoded: ev.isBase64Encoded }));
      } else {
        res.end(JSON.stringify({ statusCode: 200 }));
      }
    });
  });
  server.keepAliveTimeout = 10000;
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({
    port: server.address().port,
    events,
    of: (id, type) => (events.get(id) ?? []).filter((e) => e.type === type),
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  })));
}

/**
 * A gateway config whose routes all go to the recording function on `fnPort`, with
 * `[resume]` on and queues large enough for the chaos runs. `server` adds lines to the
 * `[server]` section, `extra` whole sections (e.g. `[cluster]`).
 */
export function gatewayConfig(fnPort, { windowSecs = 30, server = "", extra = "" } = {}) {
  return `
[server]
${server}
listen = "127.0.0.1:0"
management_listen = "127.0.0.1:0"
${extra}
[resume]
enabled = true
window_secs = ${windowSecs}
buffer_messages = 50000
buffer_bytes = 67108864

[limits]
outbound_queue_messages = 50000
outbound_queue_bytes = 67108864

[management]
auth = "none"

[functions.record]
kind = "http"
url = "http://127.0.0.1:${fnPort}/"
timeout_ms = 10000

[routes."$connect"]
function = "record"

[routes."$disconnect"]
function = "record"

[routes."$default"]
function = "record"
two_way = true
`;
}
