// Encrypted media in headless Chromium (Debian's package, driven by playwright-core): runs the
// browser example (examples/browser-media) and the media test page (test/browser/media.html),
// prints what the page measured (codecs offered and used, the tone heard, the video's size and
// colours, what Eve and the removed Bob decoded, H.264 retries, frames per second) and saves a
// screenshot. Usage: node test/media.mjs OUT.png
// `node test/media.mjs --late` runs instead the late joiner's page (test/browser/late.html: a
// member who joins late heard and seen by every member, by SSRC through the session's map); it
// needs the server model, so the tests' build (`build.sh --testkit`).
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = fileURLToPath(new URL("..", import.meta.url));
const types = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm" };
const server = createServer(async (req, res) => {
  const path = normalize(join(root, decodeURIComponent(new URL(req.url, "http://x").pathname)));
  if (!path.startsWith(root)) return res.writeHead(403).end();
  try {
    const body = await readFile(path);
    res.writeHead(200, { "content-type": types[extname(path)] ?? "application/octet-stream" }).end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const base = `http://127.0.0.1:${server.address().port}`;
const late = process.argv[2] === "--late";
const shot = late ? undefined : (process.argv[2] ?? "confchain-media.png");
const pages = late
  ? [["late", "/test/browser/late.html", 90000]]
  : [
      ["example", "/examples/browser-media/index.html", 30000],
      ["media", "/test/browser/media.html", 120000],
    ];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
  ],
});
let failed = false;
try {
  for (const [name, path, timeout] of pages) {
    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
    await page.goto(base + path);
    await page.waitForSelector("body[data-done]", { timeout });
    const done = await page.getAttribute("body", "data-done");
    const text = await page.$eval("#log", (e) => e.textContent);
    console.log(`--- ${name} (${path}): ${done}`);
    console.log(text.trimEnd().replace(/^/gm, "  "));
    if (name === "media") {
      await page.screenshot({ path: shot, fullPage: true });
      console.log(`  screenshot: ${shot}`);
    }
    if (done !== "ok") failed = true;
    if (errors.length) console.log(`  page errors: ${errors.join(" | ")}`);
    await page.close();
  }
} finally {
  await browser.close();
  server.close();
}
if (failed) {
  console.error("media: FAILED");
  process.exit(1);
}
