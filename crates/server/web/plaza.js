// plaza.js: Plaza's protocol (docs/PROTOCOL.md) for browsers, over
// WebSocket with the subprotocol plaza.v1: one packet, header included, per
// binary message. An ES module with no dependencies; the codec part
// (encodeRequest, decodeEvent) also runs in Node.
//
//   import { PlazaClient } from "/plaza.js";
//   const plaza = new PlazaClient("ws://127.0.0.1:7780/ws");
//   plaza.addEventListener("chat", (e) => console.log(e.detail));
//   await plaza.connect();
//   await plaza.login("ann", "secret");
//   await plaza.enter(1);
//   await plaza.chat("hello");
//
// Requests return promises of their response (answers come in request
// order, PROTOCOL.md §4); notifications are DOM events whose `detail` is the
// decoded packet. The client reconnects by itself with backoff and jitter
// and resumes the session with its token (kept in sessionStorage), then
// rejoins the room it was in: the messages said meanwhile are replayed as
// `chat` events, in order, once (the room's history, PROTOCOL.md "Rejoin").
// `chat()` sends with a message id of its own (ROOM_SEND): typed while the
// connection is down, a message waits for it, and one whose answer was lost
// in a drop is sent again; the server delivers it once.

export const SUBPROTOCOL = "plaza.v1";
export const VERSION = 1;
const HEADER = 5;

/** Packet ids (PROTOCOL.md §3). */
export const ID = Object.freeze({
  LOGIN: 201, LOGIN_RESPONSE: 202, ROOM_ENTER: 206, ROOM_ENTER_RESPONSE: 207,
  ROOM_NEW_USER: 208, ROOM_USER_LIST: 209, ROOM_LEAVE: 215, ROOM_LEAVE_RESPONSE: 216,
  ROOM_LEAVE_USER: 217, ROOM_CHAT: 221, ROOM_CHAT_RESPONSE: 222, ROOM_CHAT_NOTIFY: 223,
  REGISTER: 301, REGISTER_RESPONSE: 302, ECHO: 303, ECHO_RESPONSE: 304,
  WHISPER: 305, WHISPER_RESPONSE: 306, WHISPER_NOTIFY: 307,
  BROADCAST: 309, BROADCAST_RESPONSE: 310, BROADCAST_NOTIFY: 311,
  USER_LIST: 313, USER_LIST_RESPONSE: 314, LOGOUT: 315, LOGOUT_RESPONSE: 316,
  ADMIN: 317, ADMIN_RESPONSE: 318, KICK: 319, KICK_RESPONSE: 320, KICKED: 321,
  MUTE: 323, MUTE_RESPONSE: 324, MUTED: 325, SHUTDOWN: 327, SHUTDOWN_RESPONSE: 328,
  PING: 331, PONG: 332, NOTICE: 333, REQUEST_ERROR: 335, RESUME_TOKEN: 337,
  RESUME: 339, MISSED: 341, HELLO: 343, HELLO_RESPONSE: 344,
  ROOM_MESSAGE: 345, HISTORY: 346, HISTORY_RESPONSE: 347, ROOM_REJOIN: 348, ROOM_REJOIN_RESPONSE: 349,
  ROOM_SEND: 350, ROOM_SEND_RESPONSE: 351, ROOM_NOTICE: 352, ROOM_NOTICE_NOTIFY: 354,
  WHISPER_NOTICE: 355, WHISPER_NOTICE_NOTIFY: 357, ROOM_TOPIC: 358, ROOM_TOPIC_RESPONSE: 359,
  ROOM_TOPIC_NOTIFY: 360, ROOM_ROLE: 361, ROOM_ROLE_RESPONSE: 362, ROOM_ROLE_NOTIFY: 363,
  ROOM_KICK: 364, ROOM_KICK_RESPONSE: 365, ROOM_KICKED_NOTIFY: 366,
  ROOM_MODE: 367, ROOM_MODE_RESPONSE: 368, ROOM_MODE_NOTIFY: 369, ROOM_ENTER_KEY: 370,
  ROOM_INVITE: 371, ROOM_INVITE_RESPONSE: 372, ROOM_INVITE_NOTIFY: 373,
});

/** A room member's roles (ROOM_ROLE): bits. */
export const ROLES = Object.freeze({ OPERATOR: 1, VOICE: 2 });

/** HELLO's feature bits: Plaza's notifications, room history, notices. */
export const FEATURES = 1 | 2 | 4;

/** Result codes (PROTOCOL.md §5). */
export const RESULT = Object.freeze({
  0: "OK", 13: "USER_NOT_IN_ROOM", 31: "LOGIN_ALREADY", 32: "SERVER_FULL",
  33: "INVALID_CREDENTIALS", 53: "NOT_IN_LOBBY", 54: "ROOM_FULL", 61: "INVALID_ROOM",
  81: "INVALID_ROOM_NUMBER", 82: "USER_IN_LOBBY", 100: "NOT_LOGGED_IN",
  101: "SESSION_ALREADY_LOGGED_IN", 102: "INVALID_NAME", 103: "INVALID_PASSWORD",
  104: "INVALID_MESSAGE", 105: "MUTED", 106: "NOT_ADMIN", 107: "USER_NOT_FOUND",
  108: "NAME_TAKEN", 109: "REGISTRATION_DISABLED", 110: "SHUTTING_DOWN",
  111: "BAD_REQUEST", 112: "SERVICE_UNAVAILABLE", 113: "BUSY", 114: "UNKNOWN_PACKET",
  115: "RATE_LIMITED", 116: "UNREACHABLE", 117: "NOT_ROOM_OPERATOR", 118: "NOT_IN_YOUR_ROOM",
  119: "MODERATED", 120: "BAD_ROOM_KEY", 121: "INVITE_ONLY_ROOM", 122: "ALREADY_IN_ROOM",
});

/** The name of a result code. */
export function resultName(code) {
  return RESULT[code] ?? `RESULT_${code}`;
}

const utf8 = new TextEncoder();
const text = new TextDecoder("utf-8", { fatal: true });

class Writer {
  constructor() { this.buf = new Uint8Array(64); this.len = HEADER; }
  room(n) {
    if (this.len + n <= this.buf.length) return;
    const bigger = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    bigger.set(this.buf.subarray(0, this.len));
    this.buf = bigger;
  }
  view(n) { this.room(n); const v = new DataView(this.buf.buffer, this.len, n); this.len += n; return v; }
  u8(x) { this.view(1).setUint8(0, x); }
  u16(x) { this.view(2).setUint16(0, x, true); }
  u32(x) { this.view(4).setUint32(0, x, true); }
  i32(x) { this.view(4).setInt32(0, x, true); }
  u64(x) { this.view(8).setBigUint64(0, BigInt(x), true); }
  raw(bytes) { this.room(bytes.length); this.buf.set(bytes, this.len); this.len += bytes.length; }
  str8(s) { const b = utf8.encode(s); if (b.length > 255) throw new RangeError("text over 255 bytes"); this.u8(b.length); this.raw(b); }
  str16(s) { this.bytes16(utf8.encode(s)); }
  bytes16(b) { if (b.length > 65535) throw new RangeError("over 65535 bytes"); this.u16(b.length); this.raw(b); }
  fixed(s, size) {
    const b = utf8.encode(s);
    if (b.length >= size) throw new RangeError(`text over ${size - 1} bytes`);
    this.raw(b); this.raw(new Uint8Array(size - b.length));
  }
  finish(id) {
    const v = new DataView(this.buf.buffer);
    v.setUint16(0, this.len, true); v.setUint16(2, id, true); v.setUint8(4, 0);
    return this.buf.slice(0, this.len);
  }
}

class Reader {
  constructor(bytes) { this.b = bytes; this.v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength); this.at = HEADER; }
  need(n) { if (this.at + n > this.b.length) throw new RangeError("packet too short"); const at = this.at; this.at += n; return at; }
  u8() { return this.v.getUint8(this.need(1)); }
  u16() { return this.v.getUint16(this.need(2), true); }
  u32() { return this.v.getUint32(this.need(4), true); }
  u64() { return this.v.getBigUint64(this.need(8), true); }
  bytes(n) { const at = this.need(n); return this.b.subarray(at, at + n); }
  str8() { return text.decode(this.bytes(this.u8())); }
  str16() { return text.decode(this.bytes(this.u16())); }
  bytes16() { return this.bytes(this.u16()).slice(); }
  fixed(size) { const b = this.bytes(size); const end = b.indexOf(0); return text.decode(end < 0 ? b : b.subarray(0, end)); }
}

/**
 * Encodes a request: `{ type, ...fields }` with `type` one of the request
 * names below. Returns the whole packet as a Uint8Array.
 */
export function encodeRequest(r) {
  const w = new Writer();
  switch (r.type) {
    case "login": w.fixed(r.name, 33); w.fixed(r.password, 33); return w.finish(ID.LOGIN);
    case "enter": w.i32(r.room); return w.finish(ID.ROOM_ENTER);
    case "leave": return w.finish(ID.ROOM_LEAVE);
    case "chat": w.fixed(r.message, 257); return w.finish(ID.ROOM_CHAT);
    case "register": w.str8(r.name); w.str8(r.password); return w.finish(ID.REGISTER);
    case "echo": w.bytes16(r.payload); return w.finish(ID.ECHO);
    case "whisper": w.str8(r.to); w.str16(r.message); return w.finish(ID.WHISPER);
    case "broadcast": w.str16(r.message); return w.finish(ID.BROADCAST);
    case "userList": w.str8(r.after ?? ""); return w.finish(ID.USER_LIST);
    case "logout": return w.finish(ID.LOGOUT);
    case "admin": w.str8(r.secret ?? ""); return w.finish(ID.ADMIN);
    case "kick": w.str8(r.name); return w.finish(ID.KICK);
    case "mute": w.str8(r.name); w.u32(r.seconds); return w.finish(ID.MUTE);
    case "shutdown": return w.finish(ID.SHUTDOWN);
    case "ping": w.u64(r.nonce); return w.finish(ID.PING);
    case "resume": w.str8(r.name); w.str8(r.token); return w.finish(ID.RESUME);
    case "hello": w.u16(r.version ?? VERSION); w.u32(r.features ?? 1); return w.finish(ID.HELLO);
    case "history": {
      // One of `before` or `after` (a sequence number), or neither: the newest.
      const mode = r.before != null ? 1 : r.after != null ? 2 : 0;
      w.u8(mode); w.u64(BigInt(r.before ?? r.after ?? 0)); w.u16(r.limit ?? 50);
      return w.finish(ID.HISTORY);
    }
    case "rejoin": w.i32(r.room); w.u64(BigInt(r.epoch ?? 0)); w.u64(BigInt(r.after ?? 0)); return w.finish(ID.ROOM_REJOIN);
    case "send": w.u64(BigInt(r.id)); w.str16(r.message); return w.finish(ID.ROOM_SEND);
    case "roomNotice": w.u64(BigInt(r.id ?? 0)); w.str16(r.message); return w.finish(ID.ROOM_NOTICE);
    case "whisperNotice": w.str8(r.to); w.str16(r.message); return w.finish(ID.WHISPER_NOTICE);
    case "topic": w.str16(r.topic); return w.finish(ID.ROOM_TOPIC);
    case "role": w.str8(r.name); w.u8(r.role); w.u8(r.on ? 1 : 0); return w.finish(ID.ROOM_ROLE);
    case "roomKick": w.str8(r.name); w.str16(r.reason ?? ""); return w.finish(ID.ROOM_KICK);
    case "mode": w.u8(r.flags ?? 0); w.u32(r.limit ?? 0); w.str8(r.key ?? ""); return w.finish(ID.ROOM_MODE);
    case "enterKey": w.i32(r.room); w.str8(r.key); return w.finish(ID.ROOM_ENTER_KEY);
    case "invite": w.str8(r.name); return w.finish(ID.ROOM_INVITE);
    default: throw new TypeError(`unknown request ${r.type}`);
  }
}

/** The length of the packet at the start of `bytes`, or 0 if incomplete. */
export function packetLength(bytes) {
  if (bytes.length < 2) return 0;
  const len = bytes[0] | (bytes[1] << 8);
  if (len < HEADER) throw new RangeError("packet length below the header");
  return bytes.length >= len ? len : 0;
}

/**
 * Decodes one whole packet from the server into `{ id, type, ...fields }`.
 * Ids are u64 as strings (uid), nonces as BigInt. Unknown ids decode as
 * `{ type: "unknown" }`.
 */
export function decodeEvent(bytes) {
  const r = new Reader(bytes);
  const id = r.v.getUint16(2, true);
  const result = () => r.u16();
  const e = (type, fields = {}) => ({ id, type, ...fields });
  switch (id) {
    case ID.LOGIN_RESPONSE: case ID.ROOM_ENTER_RESPONSE: case ID.ROOM_LEAVE_RESPONSE:
    case ID.ROOM_CHAT_RESPONSE: case ID.REGISTER_RESPONSE: case ID.WHISPER_RESPONSE:
    case ID.BROADCAST_RESPONSE: case ID.LOGOUT_RESPONSE: case ID.ADMIN_RESPONSE:
    case ID.KICK_RESPONSE: case ID.MUTE_RESPONSE: case ID.SHUTDOWN_RESPONSE:
      return e("result", { result: result() });
    case ID.ROOM_NEW_USER: return e("newUser", { uid: String(r.u64()), name: r.str8() });
    case ID.ROOM_USER_LIST: {
      const users = [];
      for (let n = r.u8(); n > 0; n--) users.push({ uid: String(r.u64()), name: r.str8() });
      return e("roomUsers", { users });
    }
    case ID.ROOM_LEAVE_USER: return e("userLeft", { uid: String(r.u64()) });
    case ID.ROOM_CHAT_NOTIFY: return e("chat", { name: r.fixed(33), message: r.fixed(257) });
    case ID.ECHO_RESPONSE: return e("result", { result: result(), payload: r.bytes16() });
    case ID.WHISPER_NOTIFY: return e("whisper", { from: r.str8(), message: r.str16() });
    case ID.BROADCAST_NOTIFY: return e("broadcast", { from: r.str8(), message: r.str16() });
    case ID.USER_LIST_RESPONSE: {
      const code = result(); const total = r.u32(); const names = [];
      for (let n = r.u16(); n > 0; n--) names.push(r.str8());
      return e("result", { result: code, total, names, more: r.u8() === 1 });
    }
    case ID.KICKED: return e("kicked", { by: r.str8() });
    case ID.MUTED: return e("muted", { seconds: r.u32() });
    case ID.PONG: return e("result", { result: 0, nonce: r.u64() });
    case ID.NOTICE: return e("notice", { message: r.str16() });
    case ID.REQUEST_ERROR: return e("result", { request: r.u16(), result: result() });
    case ID.RESUME_TOKEN: return e("token", { token: r.str8(), ttl: r.u32() });
    case ID.MISSED: {
      // With room history: the first and last dropped message's numbers.
      const count = r.u32();
      return r.at < bytes.length ? e("missed", { count, first: String(r.u64()), last: String(r.u64()) }) : e("missed", { count });
    }
    case ID.ROOM_MESSAGE:
      return e("chat", { room: r.u32(), seq: String(r.u64()), name: r.str8(), message: r.str16() });
    // Notices (feature bit 2): messages never to be answered automatically.
    case ID.ROOM_NOTICE_NOTIFY:
      return e("chat", { room: r.u32(), seq: String(r.u64()), name: r.str8(), message: r.str16(), notice: true });
    case ID.WHISPER_NOTICE_NOTIFY: return e("whisper", { from: r.str8(), message: r.str16(), notice: true });
    case ID.ROOM_TOPIC_RESPONSE: return e("result", { result: result() });
    case ID.ROOM_TOPIC_NOTIFY:
      return e("topic", { room: r.u32(), at: String(r.u64()), by: r.str8(), topic: r.str16() });
    // Room operators: as you enter (`by` empty) and as they change.
    case ID.ROOM_ROLE_RESPONSE: case ID.ROOM_KICK_RESPONSE: case ID.ROOM_MODE_RESPONSE: case ID.ROOM_INVITE_RESPONSE:
      return e("result", { result: result() });
    case ID.ROOM_INVITE_NOTIFY: return e("invited", { room: r.u32(), by: r.str8() });
    case ID.ROOM_MODE_NOTIFY:
      return e("modes", { room: r.u32(), flags: r.u8(), limit: r.u32(), key: r.str8(), by: r.str8() });
    case ID.ROOM_ROLE_NOTIFY: return e("role", { room: r.u32(), uid: String(r.u64()), roles: r.u8(), by: r.str8() });
    case ID.ROOM_KICKED_NOTIFY:
      return e("roomKicked", { room: r.u32(), uid: String(r.u64()), name: r.str8(), by: r.str8(), reason: r.str16() });
    case ID.ROOM_SEND_RESPONSE: return e("result", { result: result(), seq: String(r.u64()) });
    case ID.HISTORY_RESPONSE: case ID.ROOM_REJOIN_RESPONSE:
      return e("result", {
        result: result(), epoch: String(r.u64()), first: String(r.u64()), next: String(r.u64()),
        count: r.u16(), gap: r.u8() === 1,
      });
    case ID.HELLO_RESPONSE:
      return e("result", { result: result(), version: r.u16(), features: r.u32(), rooms: r.u32() });
    default: return e("unknown");
  }
}

/** A request refused by the server: `code` and its `name`. */
export class PlazaError extends Error {
  constructor(request, code) {
    super(`${request}: ${resultName(code)} (${code})`);
    this.code = code; this.codeName = resultName(code);
  }
}

/**
 * A connection to a Plaza server, kept up. Events: `state` (detail: one of
 * idle, connecting, open, reconnecting, closed), `resumed`, and one per
 * notification: `newUser`, `roomUsers`, `userLeft`, `chat`, `whisper` (both
 * with `notice: true` for a notice, 354 and 357), `topic` (the room's, 360),
 * `role` (a member's roles changed, 363: `roles` holds them by uid),
 * `modes` (the room's, 369), `invited` (into a room, 373), `roomKicked` (a member put out of the room, 366; when
 * it is us, `room` is null after it),
 * `broadcast`, `kicked`, `muted`, `notice`, `token`, `missed`.
 */
export class PlazaClient extends EventTarget {
  /**
   * @param {string} url  the server's ws:// or wss:// URL (…/ws)
   * @param {object} [options]  `storage` (default sessionStorage) keeps the
   *   resume token; `backoff` {initial, max} in ms (default 500, 15000).
   */
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.storage = options.storage ?? globalThis.sessionStorage ?? null;
    this.backoff = { initial: 500, max: 15000, ...options.backoff };
    this.state = "idle";
    this.user = null;      // the logged-in name
    this.room = null;      // the room we are in (rejoined after a resume)
    this.epoch = "0";      // its history's epoch, and the last message seen
    this.seq = "0";        //   there (u64s as strings): where a rejoin starts
    this.rooms = 0;        // rooms on the server (from HELLO)
    this.members = new Map(); // uid -> name, in our room
    this.roles = new Map();   // uid -> ROLES bits, for members with any
    this.ws = null;
    this.pending = [];     // requests awaiting their answer, in order
    this.attempt = 0;
    this.wanted = false;   // whether to stay connected
    this.timer = null;
    if (globalThis.addEventListener) {
      globalThis.addEventListener("online", () => this.reconnectNow());
    }
    if (globalThis.document) {
      globalThis.document.addEventListener("visibilitychange", () => {
        if (globalThis.document.visibilityState === "visible") this.reconnectNow();
      });
    }
  }

  setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.dispatchEvent(new CustomEvent("state", { detail: s }));
  }

  /** Opens the connection (and keeps it open). Resolves once HELLO is answered. */
  connect() {
    this.wanted = true;
    return this.open();
  }

  open() {
    clearTimeout(this.timer);
    this.setState(this.attempt === 0 ? "connecting" : "reconnecting");
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this.url, SUBPROTOCOL);
      } catch (e) {
        this.retry();
        return reject(e);
      }
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      let opened = false;
      ws.onopen = async () => {
        opened = true;
        try {
          const hello = await this.request({ type: "hello", features: FEATURES });
          this.rooms = hello.rooms;
          this.attempt = 0;
          await this.resumeIfWanted();
          this.setState("open");
          resolve(hello);
        } catch (e) {
          reject(e);
        }
      };
      ws.onmessage = (m) => this.receive(new Uint8Array(m.data));
      ws.onclose = (c) => {
        if (this.ws !== ws) return;
        this.ws = null;
        this.fail(new Error(`connection closed (${c.code}${c.reason ? ": " + c.reason : ""})`));
        this.dispatchEvent(new CustomEvent("closed", { detail: { code: c.code, reason: c.reason } }));
        if (!opened) reject(new Error(`cannot connect to ${this.url}`));
        if (this.wanted) this.retry(); else this.setState("closed");
      };
    });
  }

  /** Fails every request still waiting. */
  fail(error) {
    for (const p of this.pending.splice(0)) p.reject(error);
  }

  /** Schedules a reconnect: exponential backoff with full jitter. */
  retry() {
    this.setState("reconnecting");
    const cap = Math.min(this.backoff.max, this.backoff.initial * 2 ** Math.min(this.attempt, 10));
    this.attempt += 1;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.open().catch(() => {}), Math.random() * cap);
  }

  /** Reconnects at once if the connection is down and wanted (back online, tab visible). */
  reconnectNow() {
    if (this.wanted && !this.ws) this.open().catch(() => {});
  }

  /** Closes for good (no reconnect). */
  close() {
    this.wanted = false;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
    this.setState("closed");
  }

  saved() {
    try { return JSON.parse(this.storage?.getItem("plaza.session") ?? "null"); } catch { return null; }
  }

  save(session) {
    if (!this.storage) return;
    if (session) this.storage.setItem("plaza.session", JSON.stringify(session));
    else this.storage.removeItem("plaza.session");
  }

  async resumeIfWanted() {
    const s = this.saved();
    if (!s?.token || !s.name) return;
    for (let tries = 1; ; tries++) {
      try {
        await this.resume(s.name, s.token);
        break;
      } catch (e) {
        // The connection dropped again: the reconnect goes on.
        if (!(e instanceof PlazaError)) throw e;
        // LOGIN_ALREADY: the server has not yet closed the connection that
        // dropped; it does within moments.
        if (e.code === 31 && tries < 5) {
          await new Promise((r) => setTimeout(r, 200 * tries));
          continue;
        }
        // The token expired or was used: the page asks for the password.
        this.save(null);
        this.user = null; this.room = null;
        this.dispatchEvent(new CustomEvent("resumeFailed", { detail: e }));
        return;
      }
    }
    let room = s.room ?? null, roomError = null, replay = null;
    if (room !== null) {
      try {
        replay = await this.rejoin(room, s.epoch ?? "0", s.seq ?? "0");
      } catch (e) {
        if (!(e instanceof PlazaError)) throw e;
        // Logged in, but the room is full now (say): back in the lobby.
        roomError = e; room = null; this.room = null;
        this.save({ ...(this.saved() ?? {}), room: null });
      }
    }
    // `replayed`: messages said meanwhile (already dispatched as `chat`);
    // `gap`: some from while we were away are no longer held.
    const detail = { name: s.name, room, roomError, replayed: replay?.count ?? 0, gap: replay?.gap ?? false };
    this.dispatchEvent(new CustomEvent("resumed", { detail }));
  }

  receive(bytes) {
    let e;
    try {
      if (packetLength(bytes) !== bytes.length) throw new RangeError("not one whole packet");
      e = decodeEvent(bytes);
    } catch (err) {
      console.warn("plaza: bad packet", err);
      return;
    }
    if (e.type === "roomUsers") {
      // Part of a ROOM_ENTER's answer: kept with it.
      for (const u of e.users) this.members.set(u.uid, u.name);
      this.dispatchEvent(new CustomEvent("roomUsers", { detail: e }));
      return;
    }
    if (e.type === "result") {
      const p = this.pending.shift();
      if (!p) return console.warn("plaza: an answer to nothing", e);
      if (e.result === 0) p.resolve(e); else p.reject(new PlazaError(p.type, e.result));
      return;
    }
    if (e.type === "newUser") this.members.set(e.uid, e.name);
    if (e.type === "role") { if (e.roles) this.roles.set(e.uid, e.roles); else this.roles.delete(e.uid); }
    if (e.type === "roomKicked") {
      this.roles.delete(e.uid);
      if (e.name === this.user) {
        this.room = null; this.members.clear(); this.roles.clear();
        this.save({ ...(this.saved() ?? {}), room: null });
      }
    }
    if (e.type === "userLeft") {
      e.name = this.members.get(e.uid);
      this.members.delete(e.uid);
      this.roles.delete(e.uid);
    }
    if (e.type === "chat" && e.seq !== undefined && e.room === this.room && BigInt(e.seq) > BigInt(this.seq)) {
      this.seq = e.seq;
      this.savePosition();
    }
    if (e.type === "token") this.save({ ...(this.saved() ?? {}), name: this.user, token: e.token, room: this.room });
    if (e.type === "kicked") { this.wanted = false; this.save(null); }
    this.dispatchEvent(new CustomEvent(e.type, { detail: e }));
  }

  /** Sends a request; resolves with its answer, rejects with a PlazaError. */
  request(r) {
    if (!this.ws || this.ws.readyState !== 1) return Promise.reject(new Error("not connected"));
    const bytes = encodeRequest(r);
    return new Promise((resolve, reject) => {
      this.pending.push({ type: r.type, resolve, reject });
      this.ws.send(bytes);
    });
  }

  async login(name, password) {
    this.user = name;
    try {
      return await this.request({ type: "login", name, password });
    } catch (e) {
      this.user = null;
      throw e;
    }
  }
  async resume(name, token) {
    this.user = name;
    return this.request({ type: "resume", name, token });
  }
  register(name, password) { return this.request({ type: "register", name, password }); }
  async enter(room) {
    this.members.clear(); this.roles.clear();
    const r = await this.request({ type: "enter", room });
    this.room = room;
    // Where the room's history stands, for a rejoin after a drop.
    this.place(await this.request({ type: "history", limit: 0 }));
    return r;
  }
  /** Enters `room` again and replays what was said after `after` (epoch `epoch`). */
  async rejoin(room, epoch, after) {
    this.members.clear(); this.roles.clear();
    this.room = room; this.epoch = epoch; this.seq = after;
    try {
      const r = await this.request({ type: "rejoin", room, epoch, after });
      this.place(r);
      return r;
    } catch (e) {
      this.room = null;
      throw e;
    }
  }
  /** Earlier messages of our room (scrollback): `{ before | after, limit }`; they come as `chat` events. */
  history(page = {}) { return this.request({ type: "history", ...page }); }
  /** Takes a HISTORY or ROOM_REJOIN answer's position: everything before `next` is seen. */
  place(r) {
    const last = BigInt(r.next) - 1n;
    if (r.epoch !== this.epoch || last > BigInt(this.seq)) this.seq = String(last);
    this.epoch = r.epoch;
    this.savePosition();
  }
  savePosition() {
    this.save({ ...(this.saved() ?? {}), room: this.room, epoch: this.epoch, seq: this.seq });
  }
  async leave() {
    const r = await this.request({ type: "leave" });
    this.room = null; this.members.clear(); this.roles.clear();
    this.save({ ...(this.saved() ?? {}), room: null });
    return r;
  }
  /**
   * Says `message` in our room (ROOM_SEND, with an id of ours). While the
   * connection is down it waits; if the connection drops before the answer
   * it sends again, with the same id, once back in the room: the server
   * delivers it once either way. Resolves with the answer (`seq`).
   */
  async chat(message) {
    const id = this.nextId();
    for (;;) {
      if (this.state !== "open") {
        if (!this.wanted) throw new Error("not connected");
        await this.until("open");
        continue;
      }
      try {
        return await this.request({ type: "send", id, message });
      } catch (e) {
        if (e instanceof PlazaError || !this.wanted) throw e;
        // The connection went: again once it is back (not before: it may
        // still read as open while it closes).
        await this.until("open");
      }
    }
  }
  /** A message id no earlier run of this page used (the clock, then a count). */
  nextId() {
    this.lastId = this.lastId ? this.lastId + 1n : BigInt(Date.now()) * 1000n;
    return this.lastId;
  }
  /** Resolves when the connection's state is `state` (rejects if it closes for good). */
  until(state) {
    return new Promise((resolve, reject) => {
      const on = (e) => {
        if (e.detail === state) { this.removeEventListener("state", on); resolve(); }
        else if (e.detail === "closed") { this.removeEventListener("state", on); reject(new Error("closed")); }
      };
      this.addEventListener("state", on);
    });
  }
  whisper(to, message) { return this.request({ type: "whisper", to, message }); }
  broadcast(message) { return this.request({ type: "broadcast", message }); }
  userList(after = "") { return this.request({ type: "userList", after }); }
  async logout() {
    const r = await this.request({ type: "logout" });
    this.user = null; this.room = null; this.members.clear(); this.roles.clear(); this.save(null);
    return r;
  }
  admin(secret = "") { return this.request({ type: "admin", secret }); }
  kick(name) { return this.request({ type: "kick", name }); }
  /** (A room operator) gives `name` a role in our room (ROLES.OPERATOR or ROLES.VOICE), or takes it (`on` false). */
  role(name, role, on = true) { return this.request({ type: "role", name, role, on }); }
  /** Invites `name` into our room. */
  invite(name) { return this.request({ type: "invite", name }); }
  /** (A room operator) puts `name` out of our room. */
  roomKick(name, reason = "") { return this.request({ type: "roomKick", name, reason }); }
  mute(name, seconds) { return this.request({ type: "mute", name, seconds }); }
  shutdown() { return this.request({ type: "shutdown" }); }
  ping(nonce = BigInt(Date.now())) { return this.request({ type: "ping", nonce }); }
  echo(payload) { return this.request({ type: "echo", payload }); }
}
