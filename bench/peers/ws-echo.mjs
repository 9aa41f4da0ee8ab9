// Echo server on Node's `ws` (the package pinned in package.json): a peer of the echo
// matrix (bench/report.sh) and of the compression runs (bench/compression.sh).
//
//   node bench/peers/ws-echo.mjs [--listen 127.0.0.1:0] [--deflate]
//
// Prints `listening on HOST:PORT` once bound. Every text or binary message goes back as it
// came. No client tracking, no pings: the least ws does. UTF-8 is validated (as the
// gateway does). --deflate accepts permessage-deflate with the gateway's defaults (zlib
// level 1, no context takeover either way, 15-bit window, messages under 32 bytes sent
// plain) so a compressed run compares the implementations, not the settings; ws's own
// defaults differ (context takeover, threshold 1024).
import { WebSocketServer } from "ws";

let listen = "127.0.0.1:0";
let deflate = false;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--listen") listen = argv[++i];
  else if (argv[i] === "--deflate") deflate = true;
  else {
    console.error(`ws-echo: unknown argument ${argv[i]}`);
    process.exit(2);
  }
}
const colon = listen.lastIndexOf(":");
const host = listen.slice(0, colon);
const port = Number(listen.slice(colon + 1));
if (!["127.0.0.1", "localhost", "::1"].includes(host) && !host.startsWith("127.")) {
  console.error(`ws-echo: refusing to listen on ${host}: loopback only`);
  process.exit(2);
}

const perMessageDeflate = deflate
  ? {
      zlibDeflateOptions: { level: 1 },
      serverNoContextTakeover: true,
      clientNoContextTakeover: true,
      serverMaxWindowBits: 15,
      threshold: 32,
    }
  : false;

const wss = new WebSocketServer({
  host,
  port,
  perMessageDeflate,
  clientTracking: false,
  maxPayload: 64 * 1024 * 1024,
  backlog: 4096,
});
wss.on("listening", () => {
  const a = wss.address();
  console.log(`listening on ${a.address}:${a.port}`);
});
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on("error", () => {});
});
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
