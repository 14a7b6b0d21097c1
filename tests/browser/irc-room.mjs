// The browser user of scripts/irc-clients.sh: Plaza's web page in Debian's
// headless Chromium signs up as `bea`, enters room 1, waits for the IRC
// user's line, answers it, and waits for the `plaza chat` user's line.
//   PLAZA_WS  the WebSocket listener (serves the page), host:port
//   SHOT      where to save a screenshot at the end (optional)
import puppeteer from "puppeteer-core";

const WS = process.env.PLAZA_WS;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const OPTS = { timeout: 60_000, polling: 100 };

const logShows = (p, text) =>
  p.waitForFunction(
    (t) => [...document.querySelectorAll("#log li")].some((li) => li.textContent.includes(t)),
    OPTS, text,
  );

const browser = await puppeteer.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const p = await browser.newPage();
  await p.setViewport({ width: 1000, height: 700 });
  await p.goto(`http://${WS}/`, { waitUntil: "load" });
  await p.waitForFunction(() => document.getElementById("state").dataset.state === "open", OPTS);
  await p.type("#name", "bea");
  await p.type("#password", "pw-bea");
  await p.click("#do-register");
  await p.waitForSelector("#chat:not([hidden])", OPTS);
  await p.click('#rooms button[data-room="1"]');
  await p.waitForFunction(() => document.getElementById("where").textContent === "Room 1", OPTS);
  console.log("browser: bea is in room 1");
  await logShows(p, "hello from irssi");
  console.log("browser: bea heard irene (irssi)");
  await p.select("#mode", "room");
  await p.type("#message", "hello from the browser");
  await p.click("#send");
  await logShows(p, "hello from plaza chat");
  console.log("browser: bea heard carl (plaza chat)");
  if (process.env.SHOT) await p.screenshot({ path: process.env.SHOT });
} finally {
  await browser.close();
}
