// A minimal RFC 6455 server for tests (no extensions): enough to host a fake switchboard.v1
// gateway in-process. Not for production.
import http from "node:http";
import crypto from "node:crypto";
import { EventEmitter } from "node:events";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

export class WsConn extends EventEmitter {
  constructor(socket, protocol) {
    super();
    this.socket = socket;
    this.protocol = protocol;
    this.open = true;
    this.closeSent = false;
    this._buf = Buffer.alloc(0);
    this._frag = null; // {opcode, parts}
    socket.setNoDelay(true);
    socket.on("data", (d) => this._onData(d));
    socket.on("error", () => {});
    // The HTTP server's sockets allow half-open connections: an EOF must end it here.
    socket.on("end", () => socket.destroy());
    socket.on("close", () => this._gone(1006, "", false));
  }

  send(data) {
    if (!this.open || this.closeSent) return;
    if (typeof data === "string") this._frame(0x1, Buffer.from(data));
    else this._frame(0x2, Buffer.from(data.buffer ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : data));
  }

  close(code = 1000, reason = "") {
    if (!this.open || this.closeSent) return;
    this.closeSent = true;
    const r = Buffer.from(reason);
    const p = Buffer.alloc(2 + r.length);
    p.writeUInt16BE(code);
    r.copy(p, 2);
    this._frame(0x8, p);
    this._closeCode = code;
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  /** Drops the TCP connection without a close frame. */
  terminate() { this.socket.destroy(); }

  _frame(opcode, payload) {
    const n = payload.length;
    let head;
    if (n < 126) { head = Buffer.alloc(2); head[1] = n; }
    else if (n < 65536) { head = Buffer.alloc(4); head[1] = 126; head.writeUInt16BE(n, 2); }
    else { head = Buffer.alloc(10); head[1] = 127; head.writeBigUInt64BE(BigInt(n), 2); }
    head[0] = 0x80 | opcode;
    this.socket.write(Buffer.concat([head, payload]));
  }

  _onData(d) {
    this._buf = this._buf.length ? Buffer.concat([this._buf, d]) : d;
    for (;;) {
      const b = this._buf;
      if (b.length < 2) return;
      const fin = (b[0] & 0x80) !== 0;
      const opcode = b[0] & 0x0f;
      const masked = (b[1] & 0x80) !== 0;
      let len = b[1] & 0x7f;
      let off = 2;
      if (len === 126) { if (b.length < 4) return; len = b.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (b.length < 10) return; len = Number(b.readBigUInt64BE(2)); off = 10; }
      if (!masked) return this._fail(1002);
      if (b.length < off + 4 + len) return;
      const mask = b.subarray(off, off + 4);
      const payload = Buffer.from(b.subarray(off + 4, off + 4 + len));
      for (let i = 0; i < len; i++) payload[i] ^= mask[i & 3];
      this._buf = b.subarray(off + 4 + len);
      if (!this.open) return;
      if (opcode === 0x8) {
        const code = len >= 2 ? payload.readUInt16BE(0) : 1005;
        const reason = len > 2 ? payload.subarray(2).toString() : "";
        if (!this.closeSent) { this.closeSent = true; this._frame(0x8, payload.subarray(0, 2)); }
        this.socket.end();
        this._gone(code, reason, true);
        return;
      }
      if (opcode === 0x9) { this._frame(0xa, payload); continue; }
      if (opcode === 0xa) continue;
      if (opcode === 0x0) {
        if (!this._frag) return this._fail(1002);
        this._frag.parts.push(payload);
        if (fin) { const f = this._frag; this._frag = null; this._deliver(f.opcode, Buffer.concat(f.parts)); }
        continue;
      }
      if (fin) this._deliver(opcode, payload);
      else this._frag = { opcode, parts: [payload] };
    }
  }

  _deliver(opcode, payload) {
    if (opcode === 0x1) this.emit("message", payload.toString("utf8"), false);
    else this.emit("message", new Uint8Array(payload), true);
  }

  _fail(code) { this.close(code); this._gone(code, "", false); }

  _gone(code, reason, clean) {
    if (!this.open) return;
    this.open = false;
    this.emit("close", code, reason, clean);
  }
}

/**
 * Starts an HTTP server that upgrades WebSocket requests. `accept(req, offeredProtocols)`
 * returns {status} to refuse, or {protocol} (possibly null) to accept; then
 * `onConnection(conn, req)` runs.
 */
export function startWsServer({ accept = () => ({ protocol: null }), onConnection }) {
  const server = http.createServer((req, res) => { res.writeHead(426); res.end(); });
  const sockets = new Set();
  server.on("connection", (s) => { sockets.add(s); s.on("close", () => sockets.delete(s)); });
  server.on("upgrade", (req, socket) => {
    socket.on("error", () => {});
    const key = req.headers["sec-websocket-key"];
    const offered = (req.headers["sec-websocket-protocol"] ?? "").split(",").map((s) => s.trim()).filter(Boolean);
    const verdict = key ? accept(req, offered) : { status: 400 };
    if (verdict.status) {
      socket.end(`HTTP/1.1 ${verdict.status} Refused\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    const acceptKey = crypto.createHash("sha1").update(key + GUID).digest("base64");
    const lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade", `Sec-WebSocket-Accept: ${acceptKey}`];
    if (verdict.protocol) lines.push(`Sec-WebSocket-Protocol: ${verdict.protocol}`);
    socket.write(lines.join("\r\n") + "\r\n\r\n");
    onConnection(new WsConn(socket, verdict.protocol ?? null), req);
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      resolve({
        port,
        url: `ws://127.0.0.1:${port}/`,
        close: () => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
      });
    });
  });
}
