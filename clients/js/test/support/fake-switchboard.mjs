// A fake gateway speaking switchboard.v1 as docs/protocol.md describes it, for developing and
// testing the client without the real gateway. Every client message is "invoked" once per
// sequence number (recorded in session.invoked) and, with echo on, answered with itself.
import crypto from "node:crypto";
import { startWsServer } from "./ws-server.mjs";

const PROTO = "switchboard.v1";

function frameOut(seq, data) {
  if (typeof data === "string") return `m${seq}:${data}`;
  const out = new Uint8Array(9 + data.byteLength);
  out[0] = 1;
  new DataView(out.buffer).setBigUint64(1, BigInt(seq));
  out.set(data, 9);
  return out;
}

export async function startFakeSwitchboard({
  echo = true,
  windowSecs = 120,
  bufferMessages = 100000,
  ackEvery = 32,
  ackIdleMs = 200,
  resume = true,
  answerHeartbeats = true,
  onInvoke = null,
  // Without switchboard.v1: the protocol to select among those offered (null: none).
  plainProtocol = () => null,
} = {}) {
  const sessions = new Map(); // token -> session
  const byId = new Map();     // connection id -> session
  const log = { handshakes: [], connects: 0, disconnects: [] };

  function end(s, code, reason) {
    if (s.ended) return;
    s.ended = true;
    clearTimeout(s.windowTimer);
    clearTimeout(s.ackTimer);
    sessions.delete(s.token);
    byId.delete(s.id);
    log.disconnects.push({ id: s.id, code, reason });
  }

  function sendTo(s, data) {
    if (s.ended) return false;
    if (!s.v1) { s.conn?.send(data); return true; }
    const seq = ++s.txSeq;
    s.replay.push({ seq, data });
    if (s.replay.length > bufferMessages && !s.conn) { end(s, 1006, "resume buffer overflow"); return false; }
    s.conn?.send(frameOut(seq, data));
    return true;
  }

  function ackNow(s) {
    clearTimeout(s.ackTimer);
    s.ackTimer = null;
    s.sinceAck = 0;
    if (s.conn && s.rx > s.acked) { s.acked = s.rx; s.conn.send(`a${s.rx}`); }
  }

  function invoke(s, data) {
    s.invoked.push(data);
    onInvoke?.(s, data);
    if (echo) sendTo(s, data);
  }

  function attach(s, conn) {
    s.conn = conn;
    clearTimeout(s.windowTimer);
    conn.on("message", (data, isBinary) => {
      if (!s.v1) return invoke(s, data);
      if (!isBinary) {
        if (data === "h") { if (answerHeartbeats) conn.send("h"); return; }
        if (data[0] === "a") {
          const n = Number(data.slice(1));
          s.replay = s.replay.filter((m) => m.seq > n);
          return;
        }
        if (data[0] === "m") {
          const colon = data.indexOf(":");
          return onClientMessage(s, Number(data.slice(1, colon)), data.slice(colon + 1));
        }
        return conn.close(1002, "bad frame");
      }
      if (data[0] !== 1) return conn.close(1002, "bad frame");
      const seq = Number(new DataView(data.buffer, data.byteOffset).getBigUint64(1));
      onClientMessage(s, seq, data.slice(9));
    });
    conn.on("close", (code, reason, clean) => {
      if (s.conn !== conn) return;
      s.conn = null;
      clearTimeout(s.ackTimer);
      if (clean || !s.v1) return end(s, code, reason);
      s.windowTimer = setTimeout(() => end(s, 1006, "resume window expired"), windowSecs * 1000);
      s.windowTimer.unref();
    });
  }

  function onClientMessage(s, seq, data) {
    if (seq <= s.rx) return; // a resend of something processed
    if (seq !== s.rx + 1) return s.conn.close(1002, `gap: ${seq} after ${s.rx}`);
    s.rx = seq;
    invoke(s, data);
    if (++s.sinceAck >= ackEvery) ackNow(s);
    else { clearTimeout(s.ackTimer); s.ackTimer = setTimeout(() => ackNow(s), ackIdleMs); }
  }

  function newSession(v1) {
    const s = {
      id: crypto.randomBytes(6).toString("base64url"),
      token: crypto.randomBytes(18).toString("base64url"),
      v1, conn: null, txSeq: 0, replay: [], rx: 0, acked: 0, sinceAck: 0,
      ackTimer: null, windowTimer: null, invoked: [], ended: false,
    };
    sessions.set(s.token, s);
    byId.set(s.id, s);
    log.connects++;
    return s;
  }

  const pendingResume = new WeakMap();
  const server = await startWsServer({
    accept(req, offered) {
      const url = new URL(req.url, "http://x");
      const v1 = resume && offered.includes(PROTO);
      const token = url.searchParams.get("sb_session");
      log.handshakes.push({ url: req.url, offered });
      if (v1 && token) {
        const s = sessions.get(token);
        if (s && s.conn) return { status: 409 };
        if (s) pendingResume.set(req, { s, last: Number(url.searchParams.get("sb_last") ?? 0) });
      }
      return { protocol: v1 ? PROTO : plainProtocol(offered) };
    },
    onConnection(conn, req) {
      const r = pendingResume.get(req);
      if (r && !r.s.ended && !r.s.conn) {
        const s = r.s;
        s.replay = s.replay.filter((m) => m.seq > r.last);
        s.acked = Math.max(s.acked, 0);
        attach(s, conn);
        conn.send("s" + JSON.stringify({ session: s.token, connectionId: s.id, resumed: true, lastClientSeq: s.rx, resumeWindowSecs: windowSecs }));
        for (const m of s.replay) conn.send(frameOut(m.seq, m.data));
        return;
      }
      const v1 = conn.protocol === PROTO;
      const s = newSession(v1);
      attach(s, conn);
      if (v1) conn.send("s" + JSON.stringify({ session: s.token, connectionId: s.id, resumed: false, lastClientSeq: 0, resumeWindowSecs: windowSecs }));
    },
  });

  return {
    url: server.url,
    port: server.port,
    log,
    sessions: () => [...byId.values()],
    session: (id) => byId.get(id),
    /** Like POST /@connections/{id}: false when the connection is gone. */
    send: (id, data) => { const s = byId.get(id); return s ? sendTo(s, data) : false; },
    /** Drops every socket without a close frame (sessions stay, detached). */
    dropAll: () => { for (const s of byId.values()) s.conn?.terminate(); },
    /** Closes a connection cleanly with `code` (ends the session). */
    closeConnection: (id, code, reason = "") => byId.get(id)?.conn?.close(code, reason),
    /** Forgets every session, as a restarted gateway would. */
    forgetSessions: () => { for (const s of [...byId.values()]) { end(s, 1006, "forgotten"); s.conn?.terminate(); } },
    close: () => {
      for (const s of [...byId.values()]) end(s, 1001, "server closed");
      return server.close();
    },
  };
}
