// The web chat page: plaza.js behind a small UI. Served by plaza-server at
// `/app.js`; connects to the same host's `/ws`.
import { PlazaClient } from "/plaza.js";

const $ = (id) => document.getElementById(id);
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const plaza = new PlazaClient(`${scheme}//${location.host}/ws`);
window.plaza = plaza; // for the console (and the browser test)

const STATE_TEXT = {
  idle: "offline", connecting: "connecting…", open: "connected",
  reconnecting: "connection lost: reconnecting…", closed: "disconnected",
};

function line(kind, who, text) {
  const li = document.createElement("li");
  li.className = kind;
  li.dataset.kind = kind;
  if (who) {
    const b = document.createElement("span");
    b.className = "who";
    b.textContent = who;
    li.append(b);
  }
  li.append(document.createTextNode(text));
  const log = $("log");
  const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 20;
  log.append(li);
  if (atEnd) log.scrollTop = log.scrollHeight;
}

const system = (text) => line("system", "", text);
const failed = (what) => (e) => system(`${what} failed: ${e.codeName ?? e.message}`);

function showMembers() {
  const ul = $("members");
  const roles = new Map([...plaza.roles].map(([uid, r]) => [plaza.members.get(uid), r]));
  ul.replaceChildren(...[...plaza.members.values()].sort().map((name) => {
    const li = document.createElement("li");
    // Operators and voiced members are shown as IRC shows them.
    const r = roles.get(name) ?? 0;
    li.textContent = (r & 1 ? "@" : r & 2 ? "+" : "") + name + (name === plaza.user ? " (you)" : "");
    li.onclick = () => whisperTo(name);
    return li;
  }));
  $("members-title").textContent = plaza.room === null ? "Members" : `Members (${plaza.members.size})`;
}

function showRoom() {
  const here = plaza.room;
  $("where").textContent = here === null ? "Lobby" : `Room ${here}`;
  $("leave").hidden = here === null;
  for (const b of $("rooms").children) b.classList.toggle("here", Number(b.dataset.room) === here);
  showMembers();
}

function showRooms() {
  const n = Math.min(plaza.rooms || 12, 12);
  $("rooms").replaceChildren(...Array.from({ length: n }, (_, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "secondary";
    b.dataset.room = i;
    b.textContent = i;
    b.onclick = () => enter(i);
    return b;
  }));
  $("room-number").max = Math.max(plaza.rooms - 1, 0);
  showRoom();
}

function signedIn(name) {
  $("login").hidden = true;
  $("chat").hidden = false;
  $("logout").hidden = false;
  $("me").textContent = name;
  showRooms();
}

function signedOut() {
  $("login").hidden = false;
  $("chat").hidden = true;
  $("logout").hidden = true;
  $("me").textContent = "";
  $("admin-tools").hidden = true;
}

function whisperTo(name) {
  if (name === plaza.user) return;
  $("mode").value = "whisper";
  $("to").hidden = false;
  $("to").value = name;
  $("message").focus();
}

async function enter(room) {
  try {
    if (plaza.room !== null) await plaza.leave();
    await plaza.enter(room);
    system(`you entered room ${room}`);
  } catch (e) {
    failed(`entering room ${room}`)(e);
  }
  showRoom();
}

plaza.addEventListener("state", (e) => {
  $("state").dataset.state = e.detail;
  $("state").textContent = STATE_TEXT[e.detail] ?? e.detail;
  if (e.detail === "reconnecting" && plaza.user) system("connection lost; reconnecting…");
});
plaza.addEventListener("closed", (e) => {
  if ([1001, 1008, 1013].includes(e.detail.code)) system(`server: ${e.detail.reason || "going away"}`);
});
plaza.addEventListener("resumed", (e) => {
  system(`reconnected as ${e.detail.name}`);
  if (e.detail.roomError) system(`could not go back to your room: ${e.detail.roomError.codeName}`);
  else if (e.detail.room !== null) {
    const n = e.detail.replayed;
    system(n === 0 ? "nothing was said while you were away" : `caught up: ${n} message${n === 1 ? "" : "s"} from while you were away`);
    if (e.detail.gap) system("older messages from while you were away are no longer held");
  }
  signedIn(e.detail.name);
});
plaza.addEventListener("resumeFailed", () => {
  system("your session expired: please sign in again");
  signedOut();
});
plaza.addEventListener("roomUsers", showMembers);
plaza.addEventListener("newUser", (e) => { system(`${e.detail.name} entered`); showMembers(); });
plaza.addEventListener("userLeft", (e) => { system(`${e.detail.name ?? "someone"} left`); showMembers(); });
plaza.addEventListener("chat", (e) => line(e.detail.notice ? "notice" : "chat", e.detail.name, e.detail.message));
plaza.addEventListener("whisper", (e) => line(e.detail.notice ? "notice" : "whisper", `${e.detail.from} → you`, e.detail.message));
plaza.addEventListener("broadcast", (e) => line("broadcast", `${e.detail.from} → everyone`, e.detail.message));
plaza.addEventListener("notice", (e) => line("system", "server", e.detail.message));
plaza.addEventListener("topic", (e) =>
  system(e.detail.topic ? `topic (set by ${e.detail.by}): ${e.detail.topic}` : `${e.detail.by} cleared the topic`));
plaza.addEventListener("role", (e) => {
  const who = plaza.members.get(e.detail.uid) ?? "someone";
  const r = e.detail.roles;
  const what = r & 1 ? "an operator" : r & 2 ? "voiced" : "no operator, and not voiced";
  if (e.detail.by) system(`${e.detail.by} made ${who} ${what}`);
  showMembers();
});
plaza.addEventListener("modes", (e) => {
  const { flags, limit, key, by } = e.detail;
  if (!by) return;
  const set = [flags & 1 && "only operators set the topic", flags & 2 && "only operators and voiced members speak", flags & 4 && "secret", flags & 8 && "invite-only",
    limit && `at most ${limit} members`, key && `key ${key}`].filter(Boolean);
  system(`${by} set the room's modes: ${set.join(", ") || "none"}`);
});
plaza.addEventListener("invited", (e) => system(`${e.detail.by} invites you into room ${e.detail.room}`));
plaza.addEventListener("roomKicked", (e) => {
  const { name, by, reason } = e.detail;
  const why = reason ? ` (${reason})` : "";
  system(name === plaza.user ? `${by} put you out of the room${why}` : `${by} put ${name} out of the room${why}`);
  showRoom();
  showMembers();
});
plaza.addEventListener("muted", (e) => system(e.detail.seconds === 0 ? "you can speak again" : `you are muted for ${e.detail.seconds === 4294967295 ? "ever" : e.detail.seconds + " s"}`));
plaza.addEventListener("missed", (e) => system(`${e.detail.count} messages were dropped: your connection was too slow`));
plaza.addEventListener("kicked", (e) => { system(`you were kicked by ${e.detail.by}`); signedOut(); });

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const name = $("name").value.trim();
  $("login-error").textContent = "";
  try {
    await plaza.login(name, $("password").value);
    $("password").value = "";
    signedIn(name);
    system(`welcome, ${name}`);
  } catch (e) {
    $("login-error").textContent = `Login failed: ${e.codeName ?? e.message}`;
  }
});

$("do-register").addEventListener("click", async () => {
  const name = $("name").value.trim();
  $("login-error").textContent = "";
  try {
    await plaza.register(name, $("password").value);
    $("do-login").click();
  } catch (e) {
    $("login-error").textContent = `Registration failed: ${e.codeName ?? e.message}`;
  }
});

$("logout").addEventListener("click", async () => {
  await plaza.logout().catch(() => {});
  signedOut();
});

$("room-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const n = Number($("room-number").value);
  if (Number.isInteger(n)) enter(n);
});
$("leave").addEventListener("click", async () => {
  await plaza.leave().then(() => system("you left the room"), failed("leaving"));
  showRoom();
});

$("who").addEventListener("click", async () => {
  try {
    const page = await plaza.userList();
    $("online").replaceChildren(...page.names.map((name) => {
      const li = document.createElement("li");
      li.textContent = name;
      li.onclick = () => whisperTo(name);
      return li;
    }));
    if (page.more) system(`${page.total} online; the first ${page.names.length} shown`);
  } catch (e) {
    failed("the user list")(e);
  }
});

$("mode").addEventListener("change", () => { $("to").hidden = $("mode").value !== "whisper"; });

$("say").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const message = $("message").value;
  if (!message) return;
  const mode = $("mode").value;
  try {
    if (mode === "room") {
      if (plaza.state !== "open") system("not connected: it will be sent when the connection is back");
      await plaza.chat(message);
    }
    if (mode === "broadcast") await plaza.broadcast(message);
    if (mode === "whisper") {
      const to = $("to").value.trim();
      await plaza.whisper(to, message);
      line("whisper", `you → ${to}`, message);
    }
    $("message").value = "";
  } catch (e) {
    system(`not sent: ${e.codeName ?? e.message}`);
  }
});

$("admin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await plaza.admin($("admin-secret").value);
    $("admin-tools").hidden = false;
    system("you are an administrator");
  } catch (e) {
    failed("becoming admin")(e);
  }
});
$("kick").addEventListener("click", () => plaza.kick($("target").value.trim()).then(() => system("kicked"), failed("kick")));
$("mute").addEventListener("click", () => plaza.mute($("target").value.trim(), Number($("mute-seconds").value)).then(() => system("muted"), failed("mute")));
$("shutdown").addEventListener("click", () => {
  if (confirm("Shut the server down for everyone?")) plaza.shutdown().catch(failed("shutdown"));
});

plaza.connect().then(() => showRooms()).catch(() => {});
