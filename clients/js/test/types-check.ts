// Compiled by test/types.test.mjs with `tsc --noEmit --strict`: the declarations describe
// the API as the README shows it, and misuse is a type error.
import SwitchboardClient, {
  SwitchboardClient as Named, SUBPROTOCOL, decodeFrame, backoffDelay, defaultShouldReconnect,
  type OpenEvent, type CloseEvent, type Data,
} from "../switchboard.js";

const c = new SwitchboardClient("wss://example.test/", {
  protocols: ["chat.v1"],
  resume: { resendUnconfirmed: false, fallback: true },
  reconnect: { baseMs: 250, maxMs: 10000, attempts: Infinity, jitter: 0.5, shouldReconnect: (e) => e.code !== 4401 },
  heartbeat: { intervalMs: 15000, timeoutMs: 10000 },
  offlineQueue: { maxMessages: 1000 },
  getToken: async () => "jwt",
  tokenIn: "query",
  WebSocket: globalThis.WebSocket,
});
const off: () => void = c.on("message", (data: Data, meta) => {
  if (typeof data === "string") data.toUpperCase();
  else data.byteLength;
  const seq: number | null = meta.seq;
});
off();
c.on("open", (e: OpenEvent) => { const id: string | null = e.connectionId; e.sessionLost; });
c.on("resumed", (e) => e.lastClientSeq + e.resent);
c.on("reconnecting", (e) => e.delayMs + e.attempt);
c.once("close", (e: CloseEvent) => e.byClient && e.unsent);
c.on("error", (e) => e.message);
const ok: boolean = c.send("text") && c.send(new Uint8Array(1)) && c.send(new ArrayBuffer(2));
const id: string | null = c.connectionId;
const st: "connecting" | "open" | "reconnecting" | "closed" = c.state;
c.close(1000, "bye");
new Named(new URL("ws://x/"), { resume: false, reconnect: false, heartbeat: false });
const p: "switchboard.v1" = SUBPROTOCOL;
const f = decodeFrame("m1:x");
if (f.type === "message") f.seq.toFixed();
backoffDelay(3, { baseMs: 1 }) + 1;
defaultShouldReconnect({ code: 1006 });

// @ts-expect-error: not an event
c.on("opened", () => {});
// @ts-expect-error: send takes no objects
c.send({ a: 1 });
// @ts-expect-error: tokenIn is protocol or query
new SwitchboardClient("ws://x/", { tokenIn: "header" });
// @ts-expect-error: read-only
c.connectionId = "x";
