// Types for switchboard.js. See README.md.

/** The subprotocol name, `"switchboard.v1"`. */
export declare const SUBPROTOCOL: "switchboard.v1";
/** Close code sent when the client abandons a socket it believes dead and will resume. */
export declare const DETACH_CLOSE_CODE: 4000;

/** What send() accepts. Binary payloads are copied at the call. */
export type Payload = string | ArrayBuffer | ArrayBufferView;
/** What "message" handlers receive: text as a string, binary as an ArrayBuffer. */
export type Data = string | ArrayBuffer;

/** The part of the WHATWG WebSocket this client uses (browsers, Node, the `ws` package). */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  binaryType: string;
  send(data: string | ArrayBufferLike | ArrayBufferView): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => any) | null;
  onmessage: ((ev: any) => any) | null; // ev.data: string | ArrayBuffer
  onerror: ((ev: any) => any) | null;
  onclose: ((ev: any) => any) | null;    // ev.code, ev.reason, ev.wasClean
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** How a socket ended, as given to `shouldReconnect` and the events. */
export interface CloseInfo {
  /** The close code; 1006 when the socket dropped, a handshake failed, or a timeout fired. */
  code: number;
  reason: string;
  wasClean: boolean;
}

export interface ReconnectOptions {
  /** First delay; doubles per consecutive failed attempt. Default 250. */
  baseMs?: number;
  /** Largest delay. Default 10000. */
  maxMs?: number;
  /** Consecutive failed attempts before giving up ("close" with gaveUp). Default Infinity. */
  attempts?: number;
  /** Share of each delay taken off at random (0..1). Default 0.5. */
  jitter?: number;
  /** Reconnect after this end? Default: defaultShouldReconnect. */
  shouldReconnect?: (info: CloseInfo) => boolean;
}

export interface ResumeOptions {
  /**
   * After a session was lost (window expired, gateway restarted), resend the messages written
   * to it but never acknowledged (at-least-once for those). false: drop them; they are
   * reported in the "open" event's `unconfirmed`. Default true.
   */
  resendUnconfirmed?: boolean;
  /**
   * Until a switchboard.v1 session has been established, alternate failed handshakes with
   * attempts that do not offer switchboard.v1; once such a plain attempt opens, stay plain.
   * For pages that must also work against servers without `[resume]` (browsers fail a
   * handshake whose offered subprotocols are all refused). Default false.
   */
  fallback?: boolean;
}

export interface SwitchboardClientOptions {
  /** Extra subprotocols offered after switchboard.v1 (e.g. an app protocol). */
  protocols?: string | string[];
  /** Negotiate switchboard.v1 (default true); false: a plain WebSocket. */
  resume?: boolean | ResumeOptions;
  /** false: never reconnect. */
  reconnect?: false | ReconnectOptions;
  /** App-level heartbeat (resume mode only). false: off. Defaults 15000 / 10000. */
  heartbeat?: false | { intervalMs?: number; timeoutMs?: number };
  /** Messages held while disconnected (unsent plus unacknowledged); default 1000. */
  offlineQueue?: { maxMessages?: number };
  /** Give up on a socket that has not opened (resume: sent its hello) in this long. Default 10000; 0: never. */
  connectTimeoutMs?: number;
  /** When to acknowledge server messages: after maxMessages (32) or delayMs (100) since the first unacknowledged. */
  ack?: { maxMessages?: number; delayMs?: number };
  /** Called before each connection attempt; its token goes into the handshake. */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /** Where the token goes: a `bearer.<token>` subprotocol (default) or a query parameter. */
  tokenIn?: "protocol" | "query";
  /** The query parameter for tokenIn "query". Default "token". */
  tokenParam?: string;
  /** The WebSocket constructor. Default globalThis.WebSocket. */
  WebSocket?: WebSocketConstructor;
  /** Random source for jitter (tests). Default Math.random. */
  random?: () => number;
}

export interface OpenEvent {
  /** The connection id from the hello; null in plain mode. */
  connectionId: string | null;
  resumed: false;
  mode: "resume" | "plain";
  /** The connection id of the session that was lost, if any. */
  previousConnectionId: string | null;
  /** A previous session existed and could not be resumed: server messages may have been missed. */
  sessionLost: boolean;
  /** Messages written to the lost session but never acknowledged. */
  unconfirmed: Payload[];
  /** Whether `unconfirmed` were resent on this session (resume.resendUnconfirmed). */
  resent?: boolean;
}

export interface ResumedEvent {
  connectionId: string | null;
  /** The highest client message the server had processed. */
  lastClientSeq: number;
  /** How many client messages were written again after the resume. */
  resent: number;
}

export interface ReconnectingEvent extends CloseInfo {
  /** 1 for the first attempt after a success. */
  attempt: number;
  delayMs: number;
}

export interface CloseEvent extends CloseInfo {
  /** close() was called. */
  byClient: boolean;
  /** Messages that were never written to any socket (discarded). */
  unsent: number;
  /** Reconnect attempts ran out. */
  gaveUp?: boolean;
}

export interface MessageMeta {
  /** The server's sequence number; null in plain mode. */
  seq: number | null;
}

export interface EventMap {
  open: (ev: OpenEvent) => void;
  resumed: (ev: ResumedEvent) => void;
  message: (data: Data, meta: MessageMeta) => void;
  reconnecting: (ev: ReconnectingEvent) => void;
  close: (ev: CloseEvent) => void;
  error: (err: Error) => void;
}

export declare class SwitchboardClient {
  constructor(url: string | URL, options?: SwitchboardClientOptions);
  /** The server's connection id (stable across resumes); null in plain mode or before the first hello. */
  readonly connectionId: string | null;
  readonly state: "connecting" | "open" | "reconnecting" | "closed";
  /** What the current or last socket speaks; null before the first connection. */
  readonly mode: "resume" | "plain" | null;
  /** Seconds the server keeps a dropped session (from the hello); null until then and in plain mode. */
  readonly resumeWindowSecs: number | null;
  /** Messages held: unacknowledged (resume) or waiting for a socket. */
  readonly pending: number;
  on<K extends keyof EventMap>(type: K, handler: EventMap[K]): () => void;
  once<K extends keyof EventMap>(type: K, handler: EventMap[K]): () => void;
  off<K extends keyof EventMap>(type: K, handler: EventMap[K]): void;
  /** true: accepted (written, or queued for the next connection); false: disconnected and the offline queue is full. Throws after close(). */
  send(data: Payload): boolean;
  /** Closes for good (code 1000 or 3000-4999): no reconnect, the server ends the session. */
  close(code?: number, reason?: string): void;
}

export default SwitchboardClient;

export type Frame =
  | { type: "hello"; hello: { session: string; connectionId: string; resumed: boolean; lastClientSeq: number; resumeWindowSecs: number } }
  | { type: "message"; seq: number; data: Data }
  | { type: "ack"; seq: number }
  | { type: "heartbeat" }
  | { type: "invalid"; reason: string };

/** `m<seq>:<text>`. */
export declare function encodeText(seq: number, text: string): string;
/** 0x01, seq as 8 bytes big-endian, payload. */
export declare function encodeBinary(seq: number, bytes: Uint8Array): Uint8Array;
/** Decodes a frame from a switchboard.v1 server. */
export declare function decodeFrame(frame: string | ArrayBuffer | ArrayBufferView): Frame;
/** min(maxMs, baseMs * 2^attempt), less up to `jitter` of it at random. */
export declare function backoffDelay(attempt: number, options?: { baseMs?: number; maxMs?: number; jitter?: number }, random?: () => number): number;
/** false for 1000, 1002, 1003, 1007, 1008, 1009, 1010 and 3000-4999; true otherwise. */
export declare function defaultShouldReconnect(info: { code: number }): boolean;
