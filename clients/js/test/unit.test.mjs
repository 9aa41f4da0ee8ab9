// The client's logic against an in-memory transport (the test plays the server) and mocked
// timers: framing, acks, dedupe, resend, backoff, close policy, heartbeat, plain mode.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import {
  SwitchboardClient, encodeText, encodeBinary, decodeFrame, backoffDelay, defaultShouldReconnect,
  SUBPROTOCOL, DETACH_CLOSE_CODE,
} from "../switchboard.js";
import { fakeTransport, settle } from "./support/fake-transport.mjs";

function setup(t, options = {}) {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
  const net = fakeTransport();
  const events = [];
  const messages = [];
  const c = new SwitchboardClient("ws://gw.test/chat?room=1", {
    WebSocket: net.WebSocket,
    random: () => 0, // no jitter: delays are exactly baseMs * 2^attempt
    heartbeat: false,
    ...options,
  });
  for (const e of ["open", "resumed", "reconnecting", "close", "error"]) c.on(e, (x) => events.push([e, x]));
  c.on("message", (d, meta) => messages.push([meta.seq, d]));
  const names = () => events.map(([e]) => e);
  return { c, net, events, names, messages, tick: (ms) => t.mock.timers.tick(ms) };
}

async function connected(t, options) {
  const s = setup(t, options);
  await settle();
  s.net.last.accept();
  s.net.last.hello();
  return s;
}

describe("framing", () => {
  test("text and binary messages round-trip", () => {
    assert.equal(encodeText(7, "a:b"), "m7:a:b");
    assert.deepEqual(decodeFrame("m7:a:b"), { type: "message", seq: 7, data: "a:b" });
    assert.deepEqual(decodeFrame("m12:"), { type: "message", seq: 12, data: "" });
    const seq = 2 ** 40 + 5;
    const frame = encodeBinary(seq, new Uint8Array([9, 8, 7]));
    assert.deepEqual([...frame.subarray(0, 9)], [1, 0, 0, 1, 0, 0, 0, 0, 5]);
    const d = decodeFrame(frame.buffer);
    assert.equal(d.type, "message");
    assert.equal(d.seq, seq);
    assert.ok(d.data instanceof ArrayBuffer);
    assert.deepEqual([...new Uint8Array(d.data)], [9, 8, 7]);
    // A view into a larger buffer decodes too.
    const big = new Uint8Array(20);
    big.set(frame, 5);
    assert.deepEqual(decodeFrame(big.subarray(5, 5 + frame.length)).seq, seq);
  });

  test("control frames", () => {
    assert.deepEqual(decodeFrame("a42"), { type: "ack", seq: 42 });
    assert.deepEqual(decodeFrame("h"), { type: "heartbeat" });
    const h = decodeFrame('s{"session":"t","connectionId":"c","resumed":true,"lastClientSeq":3,"resumeWindowSecs":120}');
    assert.equal(h.type, "hello");
    assert.equal(h.hello.lastClientSeq, 3);
  });

  test("malformed frames are invalid, not guessed at", () => {
    for (const f of ["m:x", "mx:1", "m-1:x", "a", "a1x", "s{", "s[]", 's{"x":1}', "hh", "", "z1"]) {
      assert.equal(decodeFrame(f).type, "invalid", f);
    }
    assert.equal(decodeFrame(new Uint8Array([1, 0, 0])).type, "invalid");
    assert.equal(decodeFrame(new Uint8Array([2, 0, 0, 0, 0, 0, 0, 0, 1])).type, "invalid");
    assert.equal(decodeFrame(new Uint8Array([1, 255, 255, 255, 255, 255, 255, 255, 255])).type, "invalid");
  });
});

describe("policies", () => {
  test("backoff doubles up to the cap, jitter takes off up to its share", () => {
    const o = { baseMs: 100, maxMs: 1000, jitter: 0.5 };
    assert.deepEqual([0, 1, 2, 3, 4, 5, 60, 2000].map((a) => backoffDelay(a, o, () => 0)), [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
    assert.equal(backoffDelay(2, o, () => 1), 200);
    assert.equal(backoffDelay(2, o, () => 0.5), 300);
    for (let i = 0; i < 1000; i++) {
      const d = backoffDelay(3, o);
      assert.ok(d >= 400 && d <= 800, String(d));
    }
    assert.equal(backoffDelay(0, { baseMs: 250, maxMs: 10000, jitter: 0 }, () => 0.9), 250);
  });

  test("default reconnect policy", () => {
    const yes = [1001, 1005, 1006, 1011, 1012, 1013, 1014, 1015];
    const no = [1000, 1002, 1003, 1007, 1008, 1009, 1010, 3000, 4000, 4001, 4999];
    for (const code of yes) assert.equal(defaultShouldReconnect({ code }), true, String(code));
    for (const code of no) assert.equal(defaultShouldReconnect({ code }), false, String(code));
  });
});

describe("handshake", () => {
  test("offers switchboard.v1 first, extra protocols, then the bearer token", async (t) => {
    let calls = 0;
    const { net } = setup(t, { protocols: ["chat.v2"], getToken: async () => `tok${++calls}` });
    await settle();
    assert.deepEqual(net.last.protocols, [SUBPROTOCOL, "chat.v2", "bearer.tok1"]);
    assert.equal(net.last.url, "ws://gw.test/chat?room=1");
  });

  test("token as a query parameter, fetched again for each connection", async (t) => {
    let calls = 0;
    const { net, tick } = setup(t, { getToken: async () => `tok${++calls}`, tokenIn: "query", tokenParam: "access_token" });
    await settle();
    assert.equal(net.last.url, "ws://gw.test/chat?room=1&access_token=tok1");
    net.last.accept();
    net.last.hello();
    net.last.drop();
    tick(250);
    await settle();
    const u = new URL(net.last.url);
    assert.equal(u.searchParams.get("access_token"), "tok2");
    assert.equal(u.searchParams.get("sb_session"), "tok-1");
    assert.equal(u.searchParams.get("room"), "1");
  });

  test("http URLs become ws URLs; bad URLs and options are refused at once", async () => {
    const net = fakeTransport();
    const c = new SwitchboardClient("https://gw.test/x#frag", { WebSocket: net.WebSocket });
    await settle();
    assert.equal(net.last.url, "wss://gw.test/x");
    c.close();
    assert.throws(() => new SwitchboardClient("ftp://gw.test/", { WebSocket: net.WebSocket }), SyntaxError);
    assert.throws(() => new SwitchboardClient("ws://gw.test/", { WebSocket: 5 }), TypeError);
    assert.throws(() => new SwitchboardClient("ws://gw.test/", { WebSocket: net.WebSocket, tokenIn: "cookie" }), TypeError);
  });

  test("a failing getToken counts as a failed attempt", async (t) => {
    let calls = 0;
    const { net, names, tick } = setup(t, { getToken: async () => { if (++calls === 1) throw new Error("no"); return "ok"; } });
    await settle();
    assert.deepEqual(names(), ["error", "reconnecting"]);
    assert.equal(net.sockets.length, 0);
    tick(250);
    await settle();
    assert.equal(net.sockets.length, 1);
  });
});

describe("resume mode", () => {
  test("hello opens a fresh session; sends queued before it go out numbered from 1", async (t) => {
    const { c, net, events, names } = setup(t);
    assert.equal(c.send("one"), true);
    assert.equal(c.send(new Uint8Array([1, 2])), true);
    await settle();
    const ws = net.last;
    assert.equal(ws.binaryType, "arraybuffer");
    ws.accept();
    assert.equal(ws.sent.length, 0, "nothing before the hello");
    assert.equal(c.state, "connecting");
    ws.hello({ connectionId: "abc" });
    assert.equal(c.state, "open");
    assert.equal(c.connectionId, "abc");
    assert.equal(c.mode, "resume");
    assert.deepEqual(names(), ["open"]);
    assert.equal(events[0][1].connectionId, "abc");
    assert.equal(events[0][1].resumed, false);
    assert.equal(ws.sent[0], "m1:one");
    assert.deepEqual([...ws.sent[1]], [1, 0, 0, 0, 0, 0, 0, 0, 2, 1, 2]);
    c.send("three");
    assert.equal(ws.sent[2], "m3:three");
    assert.equal(c.pending, 3);
    ws.deliver("a2");
    assert.equal(c.pending, 1);
  });

  test("a binary payload is copied at send()", async (t) => {
    const { c, net } = setup(t);
    const buf = new Uint8Array([5, 6]);
    c.send(buf);
    buf[0] = 99;
    await settle();
    net.last.accept();
    net.last.hello();
    assert.deepEqual([...net.last.sent[0]].slice(9), [5, 6]);
  });

  test("acks are cumulative and batched: every 32 messages or after 100 ms", async (t) => {
    const { net, messages, tick } = await connected(t);
    const ws = net.last;
    for (let i = 1; i <= 31; i++) ws.deliver(`m${i}:x${i}`);
    assert.deepEqual(ws.texts, []);
    tick(99);
    assert.deepEqual(ws.texts, []);
    tick(1);
    assert.deepEqual(ws.texts, ["a31"]);
    for (let i = 32; i <= 63; i++) ws.deliver(`m${i}:x${i}`);
    assert.deepEqual(ws.texts, ["a31", "a63"], "the 32nd since the last ack is acked at once");
    tick(1000);
    assert.deepEqual(ws.texts, ["a31", "a63"], "nothing new: no ack");
    assert.equal(messages.length, 63);
    assert.deepEqual(messages[62], [63, "x63"]);
  });

  test("resume: replays are delivered once, unacked client messages resent after lastClientSeq", async (t) => {
    const { c, net, names, messages, events, tick } = await connected(t);
    let ws = net.last;
    for (const m of ["a", "b", "c", "d"]) c.send(m);
    ws.deliver("m1:s1");
    ws.deliver("m2:s2");
    ws.deliver("a1");
    ws.drop(); // no close frame: 1006
    assert.equal(c.state, "reconnecting");
    assert.deepEqual(names(), ["open", "reconnecting"]);
    assert.equal(events[1][1].code, 1006);
    assert.equal(events[1][1].delayMs, 250);
    c.send("e"); // while away
    tick(250);
    await settle();
    ws = net.last;
    const u = new URL(ws.url);
    assert.equal(u.searchParams.get("sb_session"), "tok-1");
    assert.equal(u.searchParams.get("sb_last"), "2");
    ws.accept();
    ws.hello({ resumed: true, lastClientSeq: 2 }); // the server had processed a and b
    assert.deepEqual(names(), ["open", "reconnecting", "resumed"]);
    // An ack of what sb_last said (so the server may trim its buffer), then the resend.
    assert.deepEqual(ws.texts, ["a2", "m3:c", "m4:d", "m5:e"]);
    ws.deliver("m2:s2"); // a replay the client already has
    ws.deliver("m3:s3");
    assert.deepEqual(messages, [[1, "s1"], [2, "s2"], [3, "s3"]]);
    tick(100);
    assert.deepEqual(ws.texts.slice(4), ["a3"]);
    assert.equal(c.pending, 3);
    ws.deliver("a5");
    assert.equal(c.pending, 0);
    assert.equal(c.connectionId, "conn-1");
  });

  test("a duplicate alone still gets an ack (the server may have missed the last one)", async (t) => {
    const { net, tick } = await connected(t);
    const ws = net.last;
    ws.deliver("m1:x");
    tick(100);
    ws.deliver("m1:x");
    tick(100);
    assert.deepEqual(ws.texts, ["a1", "a1"]);
  });

  test("the session was lost: a fresh one, unconfirmed messages resent numbered from 1", async (t) => {
    const { c, net, events, messages, tick } = await connected(t);
    let ws = net.last;
    c.send("a"); c.send("b");
    ws.deliver("m1:s1");
    ws.drop();
    c.send("c");
    tick(250);
    await settle();
    ws = net.last;
    ws.accept();
    ws.hello({ resumed: false, connectionId: "conn-2", session: "tok-2" });
    const open = events.filter(([e]) => e === "open");
    assert.equal(open.length, 2);
    assert.equal(open[1][1].sessionLost, true);
    assert.equal(open[1][1].previousConnectionId, "conn-1");
    assert.deepEqual(open[1][1].unconfirmed, ["a", "b"]);
    assert.equal(c.connectionId, "conn-2");
    assert.deepEqual(ws.texts, ["m1:a", "m2:b", "m3:c"]);
    ws.deliver("m1:new1"); // the new session counts from 1 again
    assert.deepEqual(messages, [[1, "s1"], [1, "new1"]]);
    ws.drop();
    tick(250);
    await settle();
    assert.equal(new URL(net.last.url).searchParams.get("sb_session"), "tok-2");
    assert.equal(new URL(net.last.url).searchParams.get("sb_last"), "1");
  });

  test("resendUnconfirmed: false drops what the lost session may have processed, keeps what it never saw", async (t) => {
    const { c, net, events, tick } = await connected(t, { resume: { resendUnconfirmed: false } });
    let ws = net.last;
    c.send("a");
    ws.drop();
    c.send("b");
    tick(250);
    await settle();
    ws = net.last;
    ws.accept();
    ws.hello({ resumed: false, connectionId: "conn-2" });
    assert.deepEqual(events.at(-1)[1].unconfirmed, ["a"]);
    assert.deepEqual(ws.texts, ["m1:b"]);
  });

  test("a sequence gap is a protocol error: abandon the socket, resume from the last delivered", async (t) => {
    const { net, names, messages, tick } = await connected(t);
    const ws = net.last;
    ws.deliver("m1:x");
    ws.deliver("m3:z");
    assert.deepEqual(messages, [[1, "x"]]);
    assert.deepEqual(names(), ["open", "error", "reconnecting"]);
    assert.equal(ws.closed.code, DETACH_CLOSE_CODE);
    tick(250);
    await settle();
    assert.equal(new URL(net.last.url).searchParams.get("sb_last"), "1");
  });

  test("heartbeat: 'h' every interval; no frame within the timeout drops the socket", async (t) => {
    const { net, names, tick } = await connected(t, { heartbeat: { intervalMs: 1000, timeoutMs: 500 } });
    const ws = net.last;
    tick(1000);
    assert.deepEqual(ws.texts, ["h"]);
    ws.deliver("h");
    tick(1000);
    assert.deepEqual(ws.texts, ["h", "h"]);
    tick(499);
    assert.equal(ws.closed, null);
    tick(1);
    assert.equal(ws.closed.code, DETACH_CLOSE_CODE);
    assert.deepEqual(names(), ["open", "reconnecting"]);
  });

  test("connect timeout: no hello in time, try again", async (t) => {
    const { net, names, tick } = setup(t, { connectTimeoutMs: 2000 });
    await settle();
    net.last.accept();
    tick(2000);
    assert.ok(net.last.closed);
    assert.deepEqual(names(), ["reconnecting"]);
    tick(250);
    await settle();
    assert.equal(net.sockets.length, 2);
  });
});

describe("queueing and closing", () => {
  test("offline queue: bounded while disconnected, not while connected", async (t) => {
    const { c, net, tick } = setup(t, { offlineQueue: { maxMessages: 3 } });
    assert.deepEqual([1, 2, 3, 4].map((i) => c.send(`q${i}`)), [true, true, true, false]);
    await settle();
    net.last.accept();
    net.last.hello();
    for (let i = 0; i < 10; i++) assert.equal(c.send(`x${i}`), true);
    assert.equal(c.pending, 13);
    net.last.deliver("a12");
    net.last.drop();
    // One unacknowledged message is still held: room for two more.
    assert.deepEqual(["y", "z", "w"].map((m) => c.send(m)), [true, true, false]);
    assert.equal(c.pending, 3);
  });

  test("clean close by the app: no reconnect; send() throws", async (t) => {
    const { c, net, names, events, tick } = await connected(t);
    c.send("bye");
    net.last.deliver("m1:x");
    c.close(1000, "done");
    assert.deepEqual(net.last.texts, ["m1:bye", "a1"], "the pending ack goes out before the close");
    assert.deepEqual(net.last.closed, { code: 1000, reason: "done" });
    assert.deepEqual(names(), ["open", "close"]);
    assert.equal(events[1][1].byClient, true);
    assert.equal(c.state, "closed");
    assert.throws(() => c.send("x"), /closed/);
    tick(60000);
    await settle();
    assert.equal(net.sockets.length, 1);
    c.close(); // twice: nothing
    assert.throws(() => c.close(1006), RangeError);
    assert.throws(() => c.close(1000, "x".repeat(124)), SyntaxError);
  });

  test("close while waiting to reconnect stops the timer; unsent messages counted", async (t) => {
    const { c, net, events, tick } = await connected(t);
    net.last.drop();
    c.send("never");
    c.close();
    assert.equal(events.at(-1)[0], "close");
    assert.equal(events.at(-1)[1].unsent, 1);
    tick(60000);
    await settle();
    assert.equal(net.sockets.length, 1);
  });

  for (const code of [1008, 1003, 4001]) {
    test(`server close ${code}: no reconnect by default`, async (t) => {
      const { c, net, names, events, tick } = await connected(t);
      net.last.drop(code, "go away", true);
      assert.deepEqual(names(), ["open", "close"]);
      assert.equal(events[1][1].code, code);
      assert.equal(events[1][1].byClient, false);
      assert.equal(c.state, "closed");
      tick(60000);
      await settle();
      assert.equal(net.sockets.length, 1);
    });
  }

  test("shouldReconnect overrides the policy", async (t) => {
    const seen = [];
    const { net, names, tick } = await connected(t, { reconnect: { shouldReconnect: (e) => { seen.push(e.code); return e.code === 4001; } } });
    net.last.drop(4001, "retry me", true);
    assert.deepEqual(names(), ["open", "reconnecting"]);
    tick(250);
    await settle();
    net.last.accept();
    net.last.drop(1006);
    assert.deepEqual(seen, [4001, 1006]);
    assert.equal(names().at(-1), "close");
  });

  test("backoff grows over failed attempts, resets after a success, gives up after `attempts`", async (t) => {
    const { net, events, names, tick } = setup(t, { reconnect: { baseMs: 100, maxMs: 350, attempts: 4 } });
    await settle();
    net.last.drop(); // handshake refused
    for (let i = 0; i < 3; i++) {
      tick(events.at(-1)[1].delayMs);
      await settle();
      net.last.drop();
    }
    const delays = events.filter(([e]) => e === "reconnecting").map(([, x]) => x.delayMs);
    assert.deepEqual(delays, [100, 200, 350, 350]);
    tick(350);
    await settle();
    net.last.accept();
    net.last.hello();
    net.last.drop();
    assert.equal(events.at(-1)[1].delayMs, 100, "a success resets the count");
    assert.equal(events.at(-1)[1].attempt, 1);
    for (let i = 0; i < 4; i++) {
      tick(events.at(-1)[1].delayMs);
      await settle();
      net.last.drop();
    }
    assert.equal(names().at(-1), "close");
    assert.equal(events.at(-1)[1].gaveUp, true);
  });

  test("reconnect: false closes on the first drop", async (t) => {
    const { net, names } = await connected(t, { reconnect: false });
    net.last.drop();
    assert.deepEqual(names(), ["open", "close"]);
  });
});

describe("plain mode", () => {
  test("resume: false offers no subprotocol and sends raw payloads", async (t) => {
    const { c, net, names, messages, tick } = setup(t, { resume: false, protocols: ["x"] });
    c.send("early");
    await settle();
    assert.deepEqual(net.last.protocols, ["x"]);
    net.last.accept("");
    assert.deepEqual(names(), ["open"]);
    assert.equal(c.mode, "plain");
    assert.equal(c.connectionId, null);
    assert.deepEqual(net.last.sent, ["early"]);
    c.send("now");
    net.last.deliver("m1:looks like a frame");
    const bin = new Uint8Array([1, 2]).buffer;
    net.last.deliver(bin);
    assert.deepEqual(messages[0], [null, "m1:looks like a frame"]);
    assert.deepEqual([...new Uint8Array(messages[1][1])], [1, 2]);
    tick(1000);
    assert.deepEqual(net.last.sent, ["early", "now"], "no acks in plain mode");
    net.last.drop();
    assert.equal(c.pending, 0);
    c.send("offline");
    tick(250);
    await settle();
    net.last.accept("");
    assert.deepEqual(net.last.sent, ["offline"]);
    assert.deepEqual(names(), ["open", "reconnecting", "open"]);
  });

  test("a server that does not select switchboard.v1: plain mode, no hello awaited", async (t) => {
    const { c, net, messages } = setup(t);
    c.send("hi");
    await settle();
    assert.deepEqual(net.last.protocols, [SUBPROTOCOL]);
    net.last.accept(""); // no subprotocol selected
    assert.equal(c.mode, "plain");
    assert.equal(c.state, "open");
    assert.deepEqual(net.last.sent, ["hi"]);
    net.last.deliver("s{not a hello}");
    assert.deepEqual(messages, [[null, "s{not a hello}"]]);
  });
});

describe("events", () => {
  test("on() returns an unsubscribe; once() fires once; unknown events are refused", async (t) => {
    const { c, net } = setup(t);
    const got = [];
    const off = c.on("message", (d) => got.push(["on", d]));
    c.once("message", (d) => got.push(["once", d]));
    assert.throws(() => c.on("nope", () => {}), TypeError);
    await settle();
    net.last.accept();
    net.last.hello();
    net.last.deliver("m1:a");
    off();
    net.last.deliver("m2:b");
    assert.deepEqual(got, [["on", "a"], ["once", "a"]]);
  });
});
