// switchboard.js: a WebSocket client for switchboard (docs/protocol.md), no dependencies.
//
// With the `switchboard.v1` subprotocol (the default) messages are numbered and
// acknowledged both ways, and a dropped socket is resumed: the app's "message" handlers see
// every server message exactly once and in order, and each message it sent is processed by
// the server once. Against a server that does not select `switchboard.v1` (any plain
// WebSocket server) it is a reconnecting WebSocket with an offline queue.
//
// Works in browsers and in Node (20: `node --experimental-websocket`, or pass `WebSocket`).
// Types: switchboard.d.ts. Guide: README.md.

export const SUBPROTOCOL = "switchboard.v1";

/**
 * Close code this client sends when it abandons a socket it believes dead (heartbeat or
 * connect timeout, protocol violation) and will resume the session on a new one.
 */
export const DETACH_CLOSE_CODE = 4000;

const OPEN = 1;

// ---------------------------------------------------------------------------------------
// Framing (pure functions, exported for tests and for other transports)

const enc = new TextEncoder();
const DIGITS = /^[0-9]{1,16}$/;

/** `m<seq>:<payload>` for a text message. */
export function encodeText(seq, text) {
  return `m${seq}:${text}`;
}

/** Byte 0x01, `seq` as 8 bytes big-endian, then the payload. */
export function encodeBinary(seq, bytes) {
  const out = new Uint8Array(9 + bytes.byteLength);
  out[0] = 0x01;
  const dv = new DataView(out.buffer);
  dv.setUint32(1, Math.floor(seq / 2 ** 32));
  dv.setUint32(5, seq >>> 0);
  out.set(bytes, 9);
  return out;
}

function parseSeq(s) {
  if (!DIGITS.test(s)) return null;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : null;
}

/**
 * Decodes one frame received from a switchboard.v1 server. Text frames are strings, binary
 * frames ArrayBuffer or a view. Returns one of
 *   {type: "hello", hello}, {type: "message", seq, data}, {type: "ack", seq},
 *   {type: "heartbeat"}, {type: "invalid", reason}.
 * `data` of a binary message is an ArrayBuffer holding just the payload.
 */
export function decodeFrame(frame) {
  if (typeof frame === "string") {
    const kind = frame.charCodeAt(0);
    if (kind === 0x6d /* m */) {
      const colon = frame.indexOf(":");
      const seq = colon > 1 ? parseSeq(frame.slice(1, colon)) : null;
      if (seq === null) return { type: "invalid", reason: "bad message frame" };
      return { type: "message", seq, data: frame.slice(colon + 1) };
    }
    if (kind === 0x61 /* a */) {
      const seq = parseSeq(frame.slice(1));
      return seq === null ? { type: "invalid", reason: "bad ack frame" } : { type: "ack", seq };
    }
    if (frame === "h") return { type: "heartbeat" };
    if (kind === 0x73 /* s */) {
      let hello;
      try { hello = JSON.parse(frame.slice(1)); } catch { hello = null; }
      if (!hello || typeof hello !== "object" || typeof hello.session !== "string") {
        return { type: "invalid", reason: "bad hello frame" };
      }
      return { type: "hello", hello };
    }
    return { type: "invalid", reason: "unknown text frame" };
  }
  const bytes = toBytes(frame);
  if (!bytes || bytes.byteLength < 9 || bytes[0] !== 0x01) {
    return { type: "invalid", reason: "bad binary frame" };
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const seq = dv.getUint32(1) * 2 ** 32 + dv.getUint32(5);
  if (!Number.isSafeInteger(seq)) return { type: "invalid", reason: "sequence number too large" };
  return { type: "message", seq, data: copyBuffer(bytes.subarray(9)) };
}

function toBytes(x) {
  if (x instanceof ArrayBuffer) return new Uint8Array(x);
  if (ArrayBuffer.isView(x)) return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  return null;
}

function copyBuffer(view) {
  return view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength);
}

// ---------------------------------------------------------------------------------------
// Policies

/** Exponential backoff: min(maxMs, baseMs * 2^attempt), less up to `jitter` of it at random. */
export function backoffDelay(attempt, { baseMs = 250, maxMs = 10000, jitter = 0.5 } = {}, random = Math.random) {
  const full = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 52));
  return Math.max(0, Math.round(full * (1 - jitter * random())));
}

/**
 * The default answer to "reconnect after the server closed with this code?". No for codes
 * that mean the next attempt would fail the same way or that the server wants us gone:
 * 1000 (closed on purpose, e.g. the management API's DELETE), 1002, 1003, 1007, 1008
 * (policy: rate limit, expired credentials), 1009, 1010, and 3000–4999 (application codes).
 * Yes for everything else: 1001 (shutdown, timeouts), 1005, 1006 (dropped, handshake
 * refused), 1011–1015.
 */
export function defaultShouldReconnect({ code }) {
  if (code === 1000 || code === 1002 || code === 1003 || code === 1007 || code === 1008 ||
      code === 1009 || code === 1010) return false;
  if (code >= 3000 && code <= 4999) return false;
  return true;
}

// ---------------------------------------------------------------------------------------
// A FIFO with O(1) shift (the outbox can hold many thousand messages).

class Queue {
  constructor() { this.items = []; this.head = 0; }
  get length() { return this.items.length - this.head; }
  push(x) { this.items.push(x); }
  at(i) { return this.items[this.head + i]; }
  shift() {
    const x = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return x;
  }
  clear() { this.items = []; this.head = 0; }
  toArray() { return this.items.slice(this.head); }
}

// ---------------------------------------------------------------------------------------

const EVENTS = ["open", "message", "reconnecting", "resumed", "close", "error"];

function normalizeOptions(o) {
  const r = o.reconnect === false ? { attempts: 0 } : (o.reconnect ?? {});
  const hb = o.heartbeat === false ? { intervalMs: 0 } : (o.heartbeat ?? {});
  const q = o.offlineQueue ?? {};
  const resume = o.resume === false ? null : { resendUnconfirmed: true, fallback: false, ...(typeof o.resume === "object" ? o.resume : {}) };
  const opts = {
    protocols: typeof o.protocols === "string" ? [o.protocols] : [...(o.protocols ?? [])],
    resume,
    reconnect: {
      baseMs: r.baseMs ?? 250,
      maxMs: r.maxMs ?? 10000,
      attempts: r.attempts ?? Infinity,
      jitter: r.jitter ?? 0.5,
      shouldReconnect: r.shouldReconnect ?? defaultShouldReconnect,
    },
    heartbeat: { intervalMs: hb.intervalMs ?? 15000, timeoutMs: hb.timeoutMs ?? 10000 },
    offlineQueue: { maxMessages: q.maxMessages ?? 1000 },
    connectTimeoutMs: o.connectTimeoutMs ?? 10000,
    ack: { maxMessages: o.ack?.maxMessages ?? 32, delayMs: o.ack?.delayMs ?? 100 },
    getToken: o.getToken ?? null,
    tokenIn: o.tokenIn ?? "protocol",
    tokenParam: o.tokenParam ?? "token",
    WebSocket: o.WebSocket ?? globalThis.WebSocket,
    random: o.random ?? Math.random,
  };
  if (typeof opts.WebSocket !== "function") {
    throw new TypeError("no WebSocket constructor: pass options.WebSocket (Node 20: run with --experimental-websocket)");
  }
  if (opts.tokenIn !== "protocol" && opts.tokenIn !== "query") {
    throw new TypeError('tokenIn must be "protocol" or "query"');
  }
  return opts;
}

function resolveUrl(url) {
  const base = globalThis.location?.href;
  const u = base ? new URL(String(url), base) : new URL(String(url));
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  if (u.protocol !== "ws:" && u.protocol !== "wss:") throw new SyntaxError(`not a WebSocket URL: ${url}`);
  u.hash = "";
  return u;
}

function copyPayload(data) {
  if (typeof data === "string") return data;
  const bytes = toBytes(data);
  if (!bytes) throw new TypeError("send() takes a string, an ArrayBuffer or an ArrayBufferView");
  return bytes.slice(); // a private copy: the caller may reuse its buffer
}

/**
 * A WebSocket that reconnects, and with `switchboard.v1` resumes its session: see README.md.
 */
export class SwitchboardClient {
  constructor(url, options = {}) {
    this._url = resolveUrl(url);
    this._opts = normalizeOptions(options);
    /** The server's connection id (from the hello); null in plain mode or before the first hello. */
    this.connectionId = null;
    /** "connecting" | "open" | "reconnecting" | "closed" */
    this.state = "connecting";
    /** "resume" | "plain" | null (not connected yet): what the current or last socket speaks. */
    this.mode = null;
    /** Seconds the server keeps a dropped session (from the hello); null until then. */
    this.resumeWindowSecs = null;

    this._listeners = new Map(EVENTS.map((e) => [e, []]));
    this._ws = null;
    this._ready = false;        // resume: hello received; plain: socket open
    this._closed = false;       // close() called or given up
    this._session = null;       // resume token from the last hello
    // Server -> client.
    this._rx = 0;               // highest server sequence number delivered
    this._ackSent = 0;          // highest one acknowledged to the server
    this._ackDue = false;       // a duplicate arrived: re-send the ack even if unchanged
    this._unacked = 0;          // delivered since the last ack
    this._ackTimer = null;
    // Client -> server: the outbox holds payloads in order. In resume mode outbox[i] has
    // sequence number _txAcked + 1 + i and stays until the server acknowledges it; the first
    // _written of them have been written to some socket. In plain mode it holds only what
    // waits for a socket.
    this._outbox = new Queue();
    this._txAcked = 0;
    this._written = 0;
    // Timers.
    this._attempt = 0;          // consecutive failed attempts since the last success
    this._retryTimer = null;
    this._connectTimer = null;
    this._hbTimer = null;
    this._hbDeadline = null;
    this._errorTimer = null;
    // Per socket, and the switchboard.v1 fallback (options.resume.fallback).
    this._opened = false;       // the current socket fired "open"
    this._offeredV1 = false;    // the current socket offered switchboard.v1
    this._hadV1 = false;        // some socket of this client got a hello
    this._tryPlain = false;     // fallback: the next attempt offers no switchboard.v1
    this._plainOnly = false;    // fallback: a plain attempt opened; stay plain
    this._onOnline = () => { if (this._retryTimer) { clearTimeout(this._retryTimer); this._retryTimer = null; this._connect(); } };
    if (typeof globalThis.addEventListener === "function") globalThis.addEventListener("online", this._onOnline);

    Promise.resolve().then(() => this._connect());
  }

  /** Subscribes; returns a function that unsubscribes. */
  on(type, handler) {
    const list = this._listeners.get(type);
    if (!list) throw new TypeError(`unknown event ${type}; one of ${EVENTS.join(", ")}`);
    list.push(handler);
    return () => this.off(type, handler);
  }

  off(type, handler) {
    const list = this._listeners.get(type);
    const i = list ? list.indexOf(handler) : -1;
    if (i >= 0) list.splice(i, 1);
  }

  /** Like on(), for the next event of that type only. */
  once(type, handler) {
    const off = this.on(type, (...args) => { off(); handler(...args); });
    return off;
  }

  /** Messages held by the client: not yet acknowledged (resume) or not yet written (plain). */
  get pending() { return this._outbox.length; }

  /**
   * Sends a string or binary message. Returns true when the message is accepted: written
   * now, or queued until the next connection (and, in resume mode, kept until the server
   * acknowledges it). Returns false when disconnected and the offline queue is full.
   * Throws after close().
   */
  send(data) {
    if (this._closed) throw new Error("SwitchboardClient is closed");
    const payload = copyPayload(data);
    if (this._ready) {
      if (this.mode === "resume") {
        this._outbox.push(payload);
        this._writeResume(this._outbox.length - 1);
      } else {
        this._ws.send(payload);
      }
      return true;
    }
    if (this._outbox.length >= this._opts.offlineQueue.maxMessages) return false;
    this._outbox.push(payload);
    return true;
  }

  /**
   * Closes for good: no reconnect follows; the server ends the session. Messages not yet
   * written are discarded (their number is in the "close" event's `unsent`).
   */
  close(code = 1000, reason = "") {
    if (code !== 1000 && !(code >= 3000 && code <= 4999)) {
      throw new RangeError("close code must be 1000 or in 3000-4999");
    }
    if (enc.encode(reason).byteLength > 123) throw new SyntaxError("close reason longer than 123 bytes");
    if (this._closed) return;
    const ws = this._ws;
    if (ws && this._ready && this.mode === "resume") this._flushAck();
    const unsent = this._outbox.length - (this.mode === "resume" ? this._written : 0);
    this._detach();
    if (ws) { try { ws.close(code, reason); } catch { /* already closing */ } }
    this._finish({ code, reason, wasClean: true, byClient: true, unsent });
  }

  // -------------------------------------------------------------------------------------

  _emit(type, ...args) {
    for (const h of [...this._listeners.get(type)]) {
      try { h.apply(this, args); }
      catch (e) { queueMicrotask(() => { throw e; }); } // reported like an EventTarget listener's error
    }
  }

  _error(message, cause) {
    const e = new Error(message);
    if (cause !== undefined) e.cause = cause;
    this._emit("error", e);
  }

  async _connect() {
    this._retryTimer = null;
    if (this._closed || this._ws) return;
    const o = this._opts;
    let token = null;
    if (o.getToken) {
      try { token = await o.getToken(); }
      catch (e) {
        if (this._closed) return;
        this._error("getToken failed", e);
        this._scheduleReconnect({ code: 1006, reason: "getToken failed", wasClean: false });
        return;
      }
      if (this._closed || this._ws) return;
    }
    const url = new URL(this._url);
    const protocols = [];
    const offerV1 = !!o.resume && !this._plainOnly && !this._tryPlain;
    if (offerV1) {
      protocols.push(SUBPROTOCOL);
      url.searchParams.delete("sb_session");
      url.searchParams.delete("sb_last");
      if (this._session) {
        url.searchParams.set("sb_session", this._session);
        url.searchParams.set("sb_last", String(this._rx));
      }
    }
    for (const p of o.protocols) if (!protocols.includes(p)) protocols.push(p);
    if (token != null && token !== "") {
      if (o.tokenIn === "query") url.searchParams.set(o.tokenParam, String(token));
      else protocols.push(`bearer.${token}`);
    }

    let ws;
    try { ws = new o.WebSocket(url.href, protocols); }
    catch (e) {
      // A bad URL or protocol token: retrying cannot help.
      this._error("cannot create WebSocket", e);
      this._finish({ code: 1006, reason: String(e?.message ?? e), wasClean: false, byClient: false, unsent: this._outbox.length });
      return;
    }
    this._ws = ws;
    this._opened = false;
    this._offeredV1 = offerV1;
    try { ws.binaryType = "arraybuffer"; } catch { /* not settable: decoded below if possible */ }
    ws.onopen = () => this._onOpen(ws);
    ws.onmessage = (ev) => this._onMessage(ws, ev.data);
    ws.onerror = (ev) => this._onSocketError(ws, ev);
    ws.onclose = (ev) => this._onClose(ws, ev);
    if (o.connectTimeoutMs > 0) {
      this._connectTimer = setTimeout(() => {
        this._connectTimer = null;
        if (ws === this._ws && !this._ready) this._drop("connect timeout");
      }, o.connectTimeoutMs);
    }
  }

  _onOpen(ws) {
    if (ws !== this._ws) return;
    this._opened = true;
    if (this._offeredV1 && ws.protocol === SUBPROTOCOL) {
      this.mode = "resume"; // ready once the hello arrives
      return;
    }
    if (this._opts.resume?.fallback && !this._offeredV1) this._plainOnly = true;
    // Plain mode: no sequence numbers, no acks, no resume.
    const previousConnectionId = this.connectionId;
    const hadSession = this._session !== null;
    this.mode = "plain";
    this._session = null;
    this.connectionId = null;
    this._rx = 0; this._ackSent = 0; this._txAcked = 0; this._written = 0;
    this._becomeReady();
    while (this._outbox.length) ws.send(this._outbox.shift());
    this._emit("open", { connectionId: null, resumed: false, mode: "plain", previousConnectionId, sessionLost: hadSession, unconfirmed: [] });
  }

  _onMessage(ws, data) {
    if (ws !== this._ws) return;
    if (this.mode !== "resume") {
      if (this.mode !== "plain") return;
      const bytes = typeof data === "string" ? null : toBytes(data);
      this._emit("message", bytes ? copyBuffer(bytes) : data, { seq: null });
      return;
    }
    if (this._hbDeadline) { clearTimeout(this._hbDeadline); this._hbDeadline = null; }
    const f = decodeFrame(data);
    if (!this._ready && f.type !== "hello") return this._protocolError(`expected hello, got ${f.type}`);
    switch (f.type) {
      case "message": {
        if (f.seq <= this._rx) { this._ackDue = true; this._scheduleAck(); return; }
        if (f.seq !== this._rx + 1) return this._protocolError(`sequence gap: got ${f.seq} after ${this._rx}`);
        this._rx = f.seq;
        this._unacked++;
        this._scheduleAck();
        this._emit("message", f.data, { seq: f.seq });
        return;
      }
      case "ack": return this._onAck(f.seq);
      case "heartbeat": return;
      case "hello": return this._onHello(f.hello);
      default: return this._protocolError(f.reason);
    }
  }

  _onHello(h) {
    if (this._ready) return this._protocolError("second hello");
    this._hadV1 = true;
    this._tryPlain = false;
    const resumed = h.resumed === true && this._session !== null;
    const lastClientSeq = Number.isSafeInteger(h.lastClientSeq) ? h.lastClientSeq : 0;
    const previousConnectionId = this.connectionId;
    this._session = h.session;
    this.connectionId = typeof h.connectionId === "string" ? h.connectionId : null;
    this.resumeWindowSecs = typeof h.resumeWindowSecs === "number" ? h.resumeWindowSecs : null;
    let unconfirmed = [];
    if (resumed) {
      this._onAck(lastClientSeq);
      this._ackSent = 0; // sb_last told the server what we have, but may not trim its buffer: ack it
      this._ackDue = false;
      this._written = 0; // everything left is resent
    } else {
      // A fresh session: both directions count from 1 again. Messages written to the old
      // session but never acknowledged may or may not have been processed there.
      const sessionLost = previousConnectionId !== null;
      if (!this._opts.resume.resendUnconfirmed) {
        for (let i = 0; i < this._written; i++) unconfirmed.push(this._outbox.shift());
      } else {
        unconfirmed = this._outbox.toArray().slice(0, this._written);
      }
      this._rx = 0; this._ackSent = 0; this._unacked = 0; this._ackDue = false;
      this._txAcked = 0; this._written = 0;
      this._becomeReady();
      for (let i = 0; i < this._outbox.length; i++) this._writeResume(i);
      this._emit("open", {
        connectionId: this.connectionId, resumed: false, mode: "resume", previousConnectionId,
        sessionLost, unconfirmed, resent: this._opts.resume.resendUnconfirmed,
      });
      return;
    }
    this._becomeReady();
    this._flushAck();
    for (let i = 0; i < this._outbox.length; i++) this._writeResume(i);
    this._emit("resumed", { connectionId: this.connectionId, lastClientSeq, resent: this._outbox.length });
  }

  _onAck(n) {
    if (n > this._txAcked + this._outbox.length) {
      this._error(`server acknowledged ${n}, beyond the last message sent (${this._txAcked + this._outbox.length})`);
      n = this._txAcked + this._outbox.length;
    }
    while (this._txAcked < n) {
      this._outbox.shift();
      this._txAcked++;
      if (this._written > 0) this._written--;
    }
  }

  _writeResume(i) {
    const seq = this._txAcked + 1 + i;
    const p = this._outbox.at(i);
    this._ws.send(typeof p === "string" ? encodeText(seq, p) : encodeBinary(seq, p));
    if (i + 1 > this._written) this._written = i + 1;
  }

  _becomeReady() {
    this._ready = true;
    this._attempt = 0;
    this.state = "open";
    if (this._connectTimer) { clearTimeout(this._connectTimer); this._connectTimer = null; }
    const { intervalMs, timeoutMs } = this._opts.heartbeat;
    if (this.mode === "resume" && intervalMs > 0) {
      this._hbTimer = setInterval(() => {
        if (!this._ready || this._hbDeadline) return;
        this._ws.send("h");
        this._hbDeadline = setTimeout(() => { this._hbDeadline = null; this._drop("heartbeat timeout"); }, timeoutMs);
      }, intervalMs);
    }
  }

  _scheduleAck() {
    if (this._unacked >= this._opts.ack.maxMessages) return this._flushAck();
    if (!this._ackTimer) this._ackTimer = setTimeout(() => { this._ackTimer = null; this._flushAck(); }, this._opts.ack.delayMs);
  }

  _flushAck() {
    if (this._ackTimer) { clearTimeout(this._ackTimer); this._ackTimer = null; }
    if (!this._ws || this._ws.readyState !== OPEN || this.mode !== "resume") return;
    if (this._rx > this._ackSent || (this._ackDue && this._rx > 0)) {
      this._ws.send(`a${this._rx}`);
      this._ackSent = this._rx;
    }
    this._unacked = 0;
    this._ackDue = false;
  }

  _protocolError(reason) {
    this._error(`switchboard.v1 protocol error: ${reason}`);
    this._drop(`protocol error: ${reason}`);
  }

  /** Abandons the current socket (keeping the session) and reconnects. */
  _drop(reason) {
    const ws = this._ws;
    this._detach();
    if (ws) { try { ws.close(DETACH_CLOSE_CODE, reason.slice(0, 120)); } catch { /* ignore */ } }
    this._scheduleReconnect({ code: 1006, reason, wasClean: false });
  }

  _onSocketError(ws, ev) {
    if (ws !== this._ws) return;
    this._error("WebSocket error", ev?.message ?? ev?.error);
    // Browsers follow an error with a close event; Node 20's WebSocket does not when the
    // handshake is refused (e.g. HTTP 409), so do not wait for one.
    if (!this._opened) {
      this._onClose(ws, { code: 1006, reason: String(ev?.message ?? ""), wasClean: false });
      try { ws.close(); } catch { /* ignore */ }
    } else if (!this._errorTimer) {
      this._errorTimer = setTimeout(() => {
        this._errorTimer = null;
        if (ws === this._ws) this._onClose(ws, { code: 1006, reason: "error", wasClean: false });
      }, 1000);
    }
  }

  _onClose(ws, ev) {
    if (ws !== this._ws) return;
    const failedHandshake = !this._opened;
    if (failedHandshake && this._opts.resume?.fallback && !this._hadV1 && !this._plainOnly) {
      this._tryPlain = this._offeredV1; // alternate until one kind of attempt opens
    }
    this._detach();
    const info = { code: ev.code ?? 1006, reason: ev.reason ?? "", wasClean: !!ev.wasClean };
    let again = false;
    try { again = !!this._opts.reconnect.shouldReconnect(info); }
    catch (e) { queueMicrotask(() => { throw e; }); }
    if (again) this._scheduleReconnect(info);
    else this._finish({ ...info, byClient: false, unsent: this._outbox.length });
  }

  /** Forgets the current socket: handlers off, timers stopped. */
  _detach() {
    const ws = this._ws;
    if (ws) { ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null; }
    this._ws = null;
    this._ready = false;
    for (const t of ["_ackTimer", "_connectTimer", "_hbDeadline", "_errorTimer"]) {
      if (this[t]) { clearTimeout(this[t]); this[t] = null; }
    }
    if (this._hbTimer) { clearInterval(this._hbTimer); this._hbTimer = null; }
    this._unacked = 0;
    this._ackDue = false;
  }

  _scheduleReconnect(info) {
    if (this._closed) return;
    const r = this._opts.reconnect;
    if (this._attempt >= r.attempts) {
      this._finish({ ...info, byClient: false, unsent: this._outbox.length, gaveUp: r.attempts > 0 });
      return;
    }
    const delayMs = backoffDelay(this._attempt, r, this._opts.random);
    this._attempt++;
    this.state = "reconnecting";
    this._emit("reconnecting", { attempt: this._attempt, delayMs, ...info });
    if (this._closed) return; // a handler closed us
    this._retryTimer = setTimeout(() => this._connect(), delayMs);
  }

  _finish(info) {
    if (this._closed && this.state === "closed") return;
    this._closed = true;
    this.state = "closed";
    if (this._retryTimer) { clearTimeout(this._retryTimer); this._retryTimer = null; }
    if (typeof globalThis.removeEventListener === "function") globalThis.removeEventListener("online", this._onOnline);
    this._emit("close", info);
  }
}

export default SwitchboardClient;
