// SPDX-License-Identifier: MIT
// dashboard_policies.spec.js - the dashboard's storage figures (issue 17):
// the totals' cards (disk used / logical size, EC stripes degraded and
// unrecoverable, EC shards rebuilt) and the table by storage policy, in
// Debian's Chromium (headless, through playwright-core), while the Python
// side changes the cluster under it.
//
// Started by tests/integration/test_dashboard.py, which owns the cluster.
// Protocol: the script opens the page with ECHOFS_TOKEN, then reads one
// JSON object per stdin line: {"#element-id": "text", ...}. It waits
// until each element's text is exactly that (the page refreshes every
// 2 s), then prints "SNAP <json>": the text of every card and of every
// row of the policy table (by data-policy). The line "END" takes the
// screenshot and ends with "RESULT <json>" (any page errors). Progress is
// "STEP <what>".
//
// Environment: ECHOFS_URL, ECHOFS_TOKEN, SCREENSHOT (a path), CHROMIUM
// (default /usr/bin/chromium), STEP_TIMEOUT_MS (default 30000). Exits 0
// when every step passed, 1 with the reason on stderr otherwise.
"use strict";

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
const SCREENSHOT = env("SCREENSHOT");
const CHROMIUM = env("CHROMIUM", "/usr/bin/chromium");
const TIMEOUT = Number(env("STEP_TIMEOUT_MS", "30000"));

const say = (line) => process.stdout.write(line + "\n");
const step = (what) => say("STEP " + what);
const stdinLines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "echofs-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 1100 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const pageErrors = [];
  page.on("pageerror", (err) => pageErrors.push(String(err)));
  try {
    await run(page, pageErrors);
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

// What the totals section shows: each card's text by id, each policy
// row's cells by data-policy.
async function snapshot(page) {
  return page.evaluate(() => {
    const cards = {};
    for (const dd of document.querySelectorAll("#totals-section dd")) cards[dd.id] = dd.textContent;
    const policies = {};
    for (const tr of document.querySelectorAll("#policies tbody tr"))
      policies[tr.dataset.policy] = Array.from(tr.cells, (td) => td.textContent);
    return { cards, policies };
  });
}

async function run(page, pageErrors) {
  step("open the page with the token");
  await page.goto(BASE + "/");
  await page.getByLabel(/^Token/).fill(TOKEN);
  await page.getByRole("button", { name: "Use token" }).click();
  await page.locator("#policies tbody tr[data-policy=ec]").waitFor();
  for (;;) {
    const next = await stdinLines.next();
    if (next.done) throw new Error("stdin closed before END");
    if (next.value === "END") break;
    const want = JSON.parse(next.value);
    step("wait for " + next.value);
    try {
      await waitFor(async () => {
        for (const [id, text] of Object.entries(want))
          if ((await page.locator(id).textContent()) !== text) return false;
        return true;
      }, next.value);
    } catch (err) {
      throw new Error(err.message + "; the page shows " + JSON.stringify(await snapshot(page)));
    }
    say("SNAP " + JSON.stringify(await snapshot(page)));
  }
  step("screenshot");
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  say("RESULT " + JSON.stringify({ pageErrors }));
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
  process.stderr.write("dashboard_policies.spec.js: " + (err && err.stack || err) + "\n");
  process.exit(1);
});
