// SPDX-License-Identifier: MIT
// dashboard.spec.js - drives the master's dashboard in Debian's Chromium
// (headless, through playwright-core) as a person would use it.
//
// Started by tests/integration/test_dashboard.py, which owns the cluster.
// It talks to the Python side with lines on stdout and stdin:
//
//   STEP <what>          progress, for the test's log
//   KILL                 "kill a worker now"; the answer on stdin is
//                        "killed <worker_id>"
//   RESULT <json>        the end: {"downloaded": path, "sha256": hex, ...}
//
// Environment: ECHOFS_URL (the master), ECHOFS_TOKEN (a user token),
// UPLOAD_FILE (the file to upload through the page), DOWNLOAD_DIR (where
// the browser's download is saved), SCREENSHOT (a PNG path),
// CHROMIUM (default /usr/bin/chromium), STEP_TIMEOUT_MS (default 30000).
// Exits 0 when every step passed, 1 with the reason on stderr otherwise
// (a screenshot of the failure is saved next to SCREENSHOT).
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const readline = require("node:readline");
const { chromium } = require("playwright-core");

const env = (name, fallback) => {
  const v = process.env[name] || fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};
const BASE = env("ECHOFS_URL").replace(/\/$/, "");
const TOKEN = env("ECHOFS_TOKEN");
const UPLOAD_FILE = env("UPLOAD_FILE");
const DOWNLOAD_DIR = env("DOWNLOAD_DIR");
const SCREENSHOT = env("SCREENSHOT");
const CHROMIUM = env("CHROMIUM", "/usr/bin/chromium");
const TIMEOUT = Number(env("STEP_TIMEOUT_MS", "30000"));

const stdinLines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const say = (line) => process.stdout.write(line + "\n");
const step = (what) => say("STEP " + what);
const sha256 = (file) => crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "echofs-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    acceptDownloads: true,
    viewport: { width: 1280, height: 900 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const consoleErrors = [];
  page.on("console", (msg) => { if (msg.type() === "error") consoleErrors.push(msg.text()); });
  page.on("pageerror", (err) => consoleErrors.push(String(err)));
  try {
    await run(page, consoleErrors);
  } catch (err) {
    await page.screenshot({ path: SCREENSHOT.replace(/\.png$/, "-failure.png"), fullPage: true })
      .catch(() => {});
    throw err;
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

async function run(page, consoleErrors) {
  step("open the page without a token");
  await page.goto(BASE + "/");
  await page.locator("#health-detail", { hasText: "3 of 3 workers alive" }).waitFor();
  if (await page.locator("#workers-section").isVisible())
    throw new Error("the workers table is visible without a token");

  step("paste the token");
  await page.getByLabel(/^Token/).fill(TOKEN);
  await page.getByRole("button", { name: "Use token" }).click();
  const alive = page.locator('#workers tbody tr[data-status="alive"]');
  await waitFor(async () => (await alive.count()) === 3, "3 alive workers in the table");
  await page.locator("#t-workers", { hasText: "3 / 3" }).waitFor();

  step("a worker is killed");
  say("KILL");
  const answer = await stdinLines.next();
  const killed = String(answer.value || "").match(/^killed (\S+)$/);
  if (!killed) throw new Error("unexpected answer to KILL: " + JSON.stringify(answer.value));
  const row = page.locator(`#workers tbody tr[data-worker-id="${killed[1]}"]`);
  await waitFor(async () => (await row.getAttribute("data-status")) === "dead",
                `worker ${killed[1]} shown dead`);
  await row.getByText("dead", { exact: true }).waitFor();
  await waitFor(async () => (await alive.count()) === 2, "2 alive workers in the table");

  step("upload a file through the page");
  const name = path.basename(UPLOAD_FILE);
  await page.getByLabel("File to upload").setInputFiles(UPLOAD_FILE);
  await page.getByRole("button", { name: "Upload", exact: true }).click();
  await page.locator("#upload-status", { hasText: "Uploaded " + name }).waitFor();
  const progress = await page.locator("#upload-progress").evaluate((el) => el.value);
  if (progress !== 100) throw new Error("the progress bar ended at " + progress);
  const download = page.getByRole("button", { name: "Download " + name });
  await download.waitFor();
  await page.locator("#t-files", { hasText: "1" }).waitFor();

  step("download it through the page");
  const [saved] = await Promise.all([page.waitForEvent("download"), download.click()]);
  const target = path.join(DOWNLOAD_DIR, "downloaded-" + saved.suggestedFilename());
  await saved.saveAs(target);
  if (saved.suggestedFilename() !== name)
    throw new Error("the download is named " + saved.suggestedFilename());
  const same = sha256(target) === sha256(UPLOAD_FILE);
  if (!same) throw new Error("the downloaded bytes differ from the uploaded ones");

  step("screenshot");
  await page.locator("#upload-status", { hasText: "Downloaded " + name }).waitFor();
  fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  if (consoleErrors.length) throw new Error("errors in the page's console: " + consoleErrors.join("; "));
  say("RESULT " + JSON.stringify({ downloaded: target, sha256: sha256(target),
                                  killed: killed[1], screenshot: SCREENSHOT }));
}

// Polls an async predicate (the page refreshes itself every 2 s).
async function waitFor(predicate, what) {
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${TIMEOUT} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write("dashboard.spec.js: " + (err && err.stack || err) + "\n");
  process.exit(1);
});
