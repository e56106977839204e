// Opens test/browser/index.html in headless Chromium (Debian's package, driven by playwright-core),
// checks that the members' emojis agree, and saves a screenshot. Usage: node test/browser.mjs OUT.png
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = fileURLToPath(new URL("..", import.meta.url));
const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css" };
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
const url = `http://127.0.0.1:${server.address().port}/test/browser/index.html`;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  await page.waitForSelector("body[data-done]", { timeout: 30000 });
  const done = await page.getAttribute("body", "data-done");
  const emojis = await page.$$eval("td.emojis", (tds) => tds.map((td) => td.textContent));
  await page.screenshot({ path: process.argv[2] ?? "confchain-browser.png" });
  if (done !== "ok" || emojis.length !== 3 || new Set(emojis).size !== 1 || errors.length) {
    throw new Error(`browser check failed: ${done}, ${emojis}, ${errors}`);
  }
  console.log(`browser: 3 members agree on ${emojis[0]}; screenshot ${process.argv[2] ?? "confchain-browser.png"}`);
} finally {
  await browser.close();
  server.close();
}
