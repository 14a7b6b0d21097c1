// Plaza's web page in a real headless Chromium (Debian's, driven by
// puppeteer-core; no browser is downloaded). Run by the Rust test
// crates/server/tests/browser.rs, which starts the server and passes:
//   PLAZA_WS   the WebSocket listener (serves the page), host:port
//   PLAZA_TCP  the binary protocol listener, host:port
//   CHROMIUM   the browser binary (default /usr/bin/chromium)
//   SHOTS      a directory for screenshots (outside the repository)
//
// Two browser users (one on a phone-sized screen) and one TCP user share a
// room: they chat and whisper; then the phone's connection is cut for real
// (a TCP proxy in front of the server drops it) and the page reconnects
// and resumes by itself, back in its room.

import net from "node:net";
import path from "node:path";
import assert from "node:assert/strict";
import puppeteer from "puppeteer-core";
import { encodeRequest, decodeEvent, packetLength } from "../../crates/server/web/plaza.js";

const WS = process.env.PLAZA_WS;
const TCP = process.env.PLAZA_TCP;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = process.env.SHOTS;
const WAIT = 20_000;
const ROOM = 2;
// Polled, not on animation frames: a page in the background gets none.
const OPTS = { timeout: WAIT, polling: 50 };

function hostPort(s) {
  const i = s.lastIndexOf(":");
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
}

/**
 * A TCP proxy to `target` whose connections can all be cut at once, and
 * which can refuse new ones for a while (a network that is down).
 */
async function proxy(target) {
  const { host, port } = hostPort(target);
  const open = new Set();
  let offline = false;
  const server = net.createServer((down) => {
    if (offline) return down.resetAndDestroy();
    const up = net.connect(port, host);
    for (const s of [down, up]) {
      open.add(s);
      s.on("close", () => open.delete(s));
      s.on("error", () => {});
    }
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    addr: `127.0.0.1:${server.address().port}`,
    cut() {
      const n = open.size;
      for (const s of open) s.resetAndDestroy();
      return n;
    },
    /** Refuses (true) or lets through (false) new connections. */
    setDown(d) { offline = d; },
    close: () => server.close(),
  };
}

/** A Plaza user over the binary protocol (plaza.js's codec, in Node). */
class TcpUser {
  static async connect(addr) {
    const { host, port } = hostPort(addr);
    const u = new TcpUser();
    u.sock = net.connect(port, host);
    u.buf = Buffer.alloc(0);
    u.events = [];
    u.waiters = [];
    u.sock.on("data", (d) => {
      u.buf = Buffer.concat([u.buf, d]);
      for (let n; (n = packetLength(u.buf)) > 0; u.buf = u.buf.subarray(n)) {
        u.events.push(decodeEvent(new Uint8Array(u.buf.subarray(0, n))));
      }
      u.wake();
    });
    await new Promise((r, j) => { u.sock.once("connect", r); u.sock.once("error", j); });
    return u;
  }
  wake() { for (const w of this.waiters.splice(0)) w(); }
  send(r) { this.sock.write(encodeRequest(r)); }
  /** The next event that `want` accepts; earlier ones are skipped. */
  async next(want, what) {
    const deadline = Date.now() + WAIT;
    for (;;) {
      const i = this.events.findIndex(want);
      if (i >= 0) return this.events.splice(0, i + 1).pop();
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`TCP user: timed out waiting for ${what}`);
      await new Promise((r) => { this.waiters.push(r); setTimeout(r, left); });
    }
  }
  async call(r) {
    this.send(r);
    const e = await this.next((e) => e.type === "result", `the answer to ${r.type}`);
    assert.equal(e.result, 0, `${r.type} answered ${e.result}`);
    return e;
  }
}

async function page(browser, url, viewport) {
  const p = await browser.newPage();
  await p.setViewport(viewport);
  p.on("console", (m) => console.log(`[${url}] ${m.type()}: ${m.text()}`));
  p.on("pageerror", (e) => { console.error(`[${url}] page error: ${e.message}`); process.exitCode = 1; });
  await p.goto(url, { waitUntil: "load" });
  await p.waitForFunction(() => document.getElementById("state").dataset.state === "open", OPTS);
  return p;
}

// Clicks and typing wait for animation frames, which only the page in
// front gets: each interaction brings its page to the front first.
async function signUp(p, name) {
  await p.bringToFront();
  await p.type("#name", name);
  await p.type("#password", "pw-" + name);
  await p.click("#do-register");
  await p.waitForSelector("#chat:not([hidden])", { timeout: WAIT });
}

async function enterRoom(p, room) {
  await p.bringToFront();
  await p.click(`#rooms button[data-room="${room}"]`);
  await p.waitForFunction((r) => document.getElementById("where").textContent === `Room ${r}`, OPTS, room);
}

/** How many lines of the page's chat log contain `text`. */
function logCount(p, text) {
  return p.evaluate((t) => [...document.querySelectorAll("#log li")].filter((li) => li.textContent.includes(t)).length, text);
}

/** Waits until `name` is no longer in the user list `tcp` gets. */
async function untilOffline(tcp, name) {
  const deadline = Date.now() + WAIT;
  while ((await tcp.call({ type: "userList" })).names.includes(name)) {
    if (Date.now() > deadline) throw new Error(`${name} still online`);
  }
}

/** Waits until the page's chat log has a line containing `text`. */
function logShows(p, text) {
  return p.waitForFunction(
    (t) => [...document.querySelectorAll("#log li")].some((li) => li.textContent.includes(t)),
    OPTS, text,
  );
}

/** Waits until the page's chat log shows `text` as a notice. */
function noticeShows(p, text) {
  return p.waitForFunction(
    (t) => [...document.querySelectorAll("#log li.notice")].some((li) => li.textContent.includes(t)),
    OPTS, text,
  );
}

function membersShow(p, names) {
  return p.waitForFunction(
    (ns) => ns.every((n) => [...document.querySelectorAll("#members li")].some((li) => li.textContent.startsWith(n))),
    OPTS, names,
  );
}

async function say(p, mode, message, to = "") {
  await p.bringToFront();
  await p.select("#mode", mode);
  if (to) { await p.$eval("#to", (e) => { e.value = ""; }); await p.type("#to", to); }
  await p.type("#message", message);
  await p.click("#send");
  await p.waitForFunction(() => document.getElementById("message").value === "", OPTS);
}

async function shot(p, name) {
  await p.bringToFront();
  if (SHOTS) await p.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

const bobProxy = await proxy(WS);
const browser = await puppeteer.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
  protocolTimeout: 60_000,
});
const step = (what) => console.log(`step: ${what}`);
try {
  step('const alice = await page(browser, `http://${WS}/`, { width: ');
  const alice = await page(browser, `http://${WS}/`, { width: 1200, height: 800 });
  step('const bob = await page(browser, `http://${bobProxy.addr}/`, ');
  const bob = await page(browser, `http://${bobProxy.addr}/`, { width: 390, height: 844, isMobile: true });
  step('await signUp(alice, "alice");');
  await signUp(alice, "alice");
  step('await signUp(bob, "bob");');
  await signUp(bob, "bob");

  step('const tcp = await TcpUser.connect(TCP);');
  const tcp = await TcpUser.connect(TCP);
  step('await tcp.call({ type: "hello" });');
  await tcp.call({ type: "hello" });
  step('await tcp.call({ type: "register", name: "terry", password: ');
  await tcp.call({ type: "register", name: "terry", password: "pw" });
  step('await tcp.call({ type: "login", name: "terry", password: "pw');
  await tcp.call({ type: "login", name: "terry", password: "pw" });
  step('await tcp.call({ type: "enter", room: ROOM });');
  await tcp.call({ type: "enter", room: ROOM });

  step('await enterRoom(alice, ROOM);');
  await enterRoom(alice, ROOM);
  step('await enterRoom(bob, ROOM);');
  await enterRoom(bob, ROOM);
  // terry entered the empty room first: its operator, shown as IRC shows one.
  step('await membersShow(alice, ["alice", "bob", "@terry"]);');
  await membersShow(alice, ["alice", "bob", "@terry"]);
  step('await membersShow(bob, ["alice", "bob", "@terry"]);');
  await membersShow(bob, ["alice", "bob", "@terry"]);

  // Room chat: browser to browser and TCP, TCP to browsers.
  step('await say(alice, "room", "hello from alice");');
  await say(alice, "room", "hello from alice");
  step('await logShows(bob, "hello from alice");');
  await logShows(bob, "hello from alice");
  step('const heard = await tcp.next((e) => e.type === "chat" && e.n');
  const heard = await tcp.next((e) => e.type === "chat" && e.name === "alice", "alice's chat");
  assert.equal(heard.message, "hello from alice");
  step('await tcp.call({ type: "chat", message: "hello from terry" }');
  await tcp.call({ type: "chat", message: "hello from terry" });
  step('await logShows(alice, "hello from terry");');
  await logShows(alice, "hello from terry");
  step('await logShows(bob, "hello from terry");');
  await logShows(bob, "hello from terry");

  // Whispers: browser to browser, TCP to browser, browser to TCP.
  step('await say(bob, "whisper", "psst alice", "alice");');
  await say(bob, "whisper", "psst alice", "alice");
  step('await logShows(alice, "psst alice");');
  await logShows(alice, "psst alice");
  step('await tcp.call({ type: "whisper", to: "bob", message: "psst ');
  await tcp.call({ type: "whisper", to: "bob", message: "psst bob" });
  step('await logShows(bob, "psst bob");');
  await logShows(bob, "psst bob");
  step('await say(alice, "whisper", "psst terry", "terry");');
  await say(alice, "whisper", "psst terry", "terry");
  step('const w = await tcp.next((e) => e.type === "whisper", "alice');
  const w = await tcp.next((e) => e.type === "whisper", "alice's whisper");
  assert.deepEqual([w.from, w.message], ["alice", "psst terry"]);
  // Notices (ROOM_NOTICE, WHISPER_NOTICE) from TCP show as notices.
  step('await tcp.call({ type: "roomNotice", message: "notice from terry" });');
  await tcp.call({ type: "roomNotice", message: "notice from terry" });
  step('await noticeShows(alice, "notice from terry");');
  await noticeShows(alice, "notice from terry");
  step('await noticeShows(bob, "notice from terry");');
  await noticeShows(bob, "notice from terry");
  step('await tcp.call({ type: "whisperNotice", to: "alice", message: "notice to alice" });');
  await tcp.call({ type: "whisperNotice", to: "alice", message: "notice to alice" });
  step('await noticeShows(alice, "notice to alice");');
  await noticeShows(alice, "notice to alice");
  // The room's topic, set by the TCP user, shows on both pages.
  step('await tcp.call({ type: "topic", topic: "release at noon" });');
  await tcp.call({ type: "topic", topic: "release at noon" });
  step('await logShows(alice, "topic (set by terry): release at noon");');
  await logShows(alice, "topic (set by terry): release at noon");
  step('await logShows(bob, "topic (set by terry): release at noon");');
  await logShows(bob, "topic (set by terry): release at noon");
  // terry makes alice an operator too: both pages show it.
  step('await tcp.call({ type: "role", name: "alice", role: 1, on: true });');
  await tcp.call({ type: "role", name: "alice", role: 1, on: true });
  step('await logShows(bob, "terry made alice an operator");');
  await logShows(bob, "terry made alice an operator");
  step('await membersShow(alice, ["@alice", "bob", "@terry"]);');
  await membersShow(alice, ["@alice", "bob", "@terry"]);
  // And locks the topic: both pages say so.
  step('await tcp.call({ type: "mode", flags: 1 });');
  await tcp.call({ type: "mode", flags: 1 });
  step('await logShows(bob, "terry set the room\'s modes: only operators set the topic");');
  await logShows(bob, "terry set the room's modes: only operators set the topic");
  step('await shot(alice, "1-chatting");');
  await shot(alice, "1-chatting");
  step('await shot(bob, "1-chatting-phone");');
  await shot(bob, "1-chatting-phone");

  // Cut bob's connection for real, with the network down for a while: the
  // page shows it, and alice talks meanwhile. Back up, the page resumes
  // with its token, rejoins its room, and shows what alice said, once.
  bobProxy.setDown(true);
  step('assert.ok(bobProxy.cut() > 0, "bob had a connection to cut")');
  assert.ok(bobProxy.cut() > 0, "bob had a connection to cut");
  step('await bob.waitForFunction(() => document.getElementById("sta');
  await bob.waitForFunction(() => document.getElementById("state").dataset.state === "reconnecting", OPTS);
  step('await shot(bob, "2-cut-phone");');
  await shot(bob, "2-cut-phone");
  // The server has seen bob go when his name leaves the user list (his
  // seat is held for his return, so the room hears no leave).
  step('await untilOffline(tcp, "bob");');
  await untilOffline(tcp, "bob");
  step('await say(alice, "room", "said while bob was away");');
  await say(alice, "room", "said while bob was away");
  // Bob types while his connection is down: the page holds it and sends it
  // (with its message id) once back in the room.
  await bob.bringToFront();
  await bob.select("#mode", "room");
  await bob.type("#message", "typed while away");
  await bob.click("#send");
  await logShows(bob, "it will be sent when the connection is back");
  bobProxy.setDown(false);
  step('await logShows(bob, "reconnected as bob");');
  await logShows(bob, "reconnected as bob");
  step('await logShows(bob, "said while bob was away");');
  await logShows(bob, "said while bob was away");
  step('await logShows(bob, "caught up: 1 message from while you were away");');
  await logShows(bob, "caught up: 1 message from while you were away");
  assert.equal(await logCount(bob, "said while bob was away"), 1, "the missed message is shown once");
  step('await logShows(alice, "typed while away");');
  await logShows(alice, "typed while away");
  await bob.waitForFunction(() => document.getElementById("message").value === "", OPTS);
  assert.equal(await logCount(alice, "typed while away"), 1, "what bob typed while away arrives once");
  step('await bob.waitForFunction(() => document.getElementById("sta');
  await bob.waitForFunction(() => document.getElementById("state").dataset.state === "open", OPTS);
  step('await bob.waitForFunction((r) => document.getElementById("wh');
  await bob.waitForFunction((r) => document.getElementById("where").textContent === `Room ${r}`, OPTS, ROOM);
  step('await membersShow(alice, ["@alice", "bob", "@terry"]);');
  await membersShow(alice, ["@alice", "bob", "@terry"]);
  // Back in its held seat, bob's page is told the operators again.
  step('await membersShow(bob, ["@alice", "bob", "@terry"]);');
  await membersShow(bob, ["@alice", "bob", "@terry"]);
  step('await say(bob, "room", "bob is back");');
  await say(bob, "room", "bob is back");
  step('await logShows(alice, "bob is back");');
  await logShows(alice, "bob is back");
  step('await tcp.next((e) => e.type === "chat" && e.message === "bo');
  await tcp.next((e) => e.type === "chat" && e.message === "bob is back", "bob's chat after the resume");
  step('await shot(bob, "3-resumed-phone");');
  await shot(bob, "3-resumed-phone");

  // Cut again, with the network down past the resume window (2 s here:
  // the room then hears bob left) while the room fills up (capacity 3):
  // the page resumes the session but cannot re-enter the room, and says so.
  // (Bob may have left once already: if his page took longer than the
  // window to come back the first time. Wait for a new leave.)
  const leftBefore = await logCount(alice, "bob left");
  bobProxy.setDown(true);
  assert.ok(bobProxy.cut() > 0, "bob had a connection to cut");
  await bob.waitForFunction(() => document.getElementById("state").dataset.state === "reconnecting", OPTS);
  await alice.waitForFunction(
    (t, n) => [...document.querySelectorAll("#log li")].filter((li) => li.textContent.includes(t)).length > n,
    OPTS, "bob left", leftBefore,
  );
  const filler = await TcpUser.connect(TCP);
  await filler.call({ type: "hello" });
  await filler.call({ type: "register", name: "fran", password: "pw" });
  await filler.call({ type: "login", name: "fran", password: "pw" });
  await filler.call({ type: "enter", room: ROOM });
  bobProxy.setDown(false);
  await logShows(bob, "could not go back to your room: ROOM_FULL");
  await bob.waitForFunction(() => document.getElementById("state").dataset.state === "open", OPTS);
  await bob.waitForFunction(() => document.getElementById("where").textContent === "Lobby", OPTS);
  await shot(bob, "4-room-full-phone");
  // An operator puts alice out of the room: her page says so, in the lobby.
  step('await tcp.call({ type: "roomKick", name: "alice", reason: "closing time" });');
  await tcp.call({ type: "roomKick", name: "alice", reason: "closing time" });
  step('await logShows(alice, "terry put you out of the room (closing time)");');
  await logShows(alice, "terry put you out of the room (closing time)");
  await alice.waitForFunction(() => document.getElementById("where").textContent === "Lobby", OPTS);
  // The room turns invite-only; terry invites her back: her page says so.
  step('await tcp.call({ type: "mode", flags: 8 });');
  await tcp.call({ type: "mode", flags: 8 });
  step('await tcp.call({ type: "invite", name: "alice" });');
  await tcp.call({ type: "invite", name: "alice" });
  step('await logShows(alice, `terry invites you into room ${ROOM}`);');
  await logShows(alice, `terry invites you into room ${ROOM}`);
  console.log("browser test: two browsers and a TCP user chatted, whispered, saw the room's operators, and one browser resumed after a cut");
} finally {
  await browser.close();
  bobProxy.close();
}
process.exit(process.exitCode ?? 0);
