// An in-memory stand-in for the WebSocket constructor: the test plays the server.
export function fakeTransport() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url, protocols = []) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.protocol = "";
      this.binaryType = "blob";
      this.sent = [];
      this.closed = null;
      sockets.push(this);
    }
    send(data) {
      if (this.readyState === 0) throw new Error("InvalidStateError: still connecting");
      if (this.readyState !== 1) return;
      this.sent.push(typeof data === "string" ? data : new Uint8Array(data.buffer ?? data, data.byteOffset ?? 0, data.byteLength));
    }
    close(code, reason) {
      this.closed = { code, reason };
      if (this.readyState < 2) this.readyState = 2;
    }
    // ---- the server's side
    accept(protocol = "switchboard.v1") {
      this.protocol = protocol;
      this.readyState = 1;
      this.onopen?.({});
    }
    hello(fields = {}) {
      this.deliver("s" + JSON.stringify({ session: "tok-1", connectionId: "conn-1", resumed: false, lastClientSeq: 0, resumeWindowSecs: 120, ...fields }));
    }
    deliver(data) { this.onmessage?.({ data }); }
    drop(code = 1006, reason = "", wasClean = false) {
      this.readyState = 3;
      this.onclose?.({ code, reason, wasClean });
    }
    /** Text frames sent by the client, in order. */
    get texts() { return this.sent.filter((d) => typeof d === "string"); }
  }
  return {
    WebSocket: FakeWebSocket,
    sockets,
    get last() { return sockets.at(-1); },
  };
}

/** Lets queued microtasks and immediates run (the client connects from a microtask). */
export const settle = () => new Promise((r) => setImmediate(r));
