// SPDX-License-Identifier: MIT
// dashboard_operators.spec.js - the dashboard of a master started with
// TOPOLOGY_VISIBLE_TO=operators, in Debian's Chromium (headless, through
// playwright-core): a plain user's token shows that user's files and says
// the workers and the totals are for operators, with no error; an admin
// token (an operator's) shows the workers and the totals.
//
// Started by tests/integration/test_dashboard.py, which owns the cluster.
// Protocol on stdout: STEP <what> (progress), then RESULT <json>.
//
// Environment: ECHOFS_URL (the master), ECHOFS_TOKEN (a plain user's
// token, who owns one file named FILE_NAME), ECHOFS_ADMIN_TOKEN (an admin
// token), WORKERS (how many workers are alive), CHROMIUM (default
// /usr/bin/chromium), STEP_TIMEOUT_MS (default 30000). Exits 0 when every
// step passed, 1 with the reason on stderr otherwise.
"use strict";

const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { chromium } = require("playwright-core");

const env = (name, fallback) => {
  const v = process.env[name] || fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};
const BASE = env("ECHOFS_URL").replace(/\/$/, "");
const TOKEN = env("ECHOFS_TOKEN");
const ADMIN_TOKEN = env("ECHOFS_ADMIN_TOKEN");
const FILE_NAME = env("FILE_NAME");
const WORKERS = Number(env("WORKERS"));
const CHROMIUM = env("CHROMIUM", "/usr/bin/chromium");
const TIMEOUT = Number(env("STEP_TIMEOUT_MS", "30000"));

const say = (line) => process.stdout.write(line + "\n");
const step = (what) => say("STEP " + what);

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "echofs-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
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

async function useToken(page, token) {
  await page.getByLabel(/^Token/).fill(token);
  await page.getByRole("button", { name: "Use token" }).click();
}

async function run(page, pageErrors) {
  step("open the page without a token");
  await page.goto(BASE + "/");
  await page.locator("#health-detail", { hasText: `${WORKERS} of ${WORKERS} workers alive` })
    .waitFor();

  step("a plain user's token");
  await useToken(page, TOKEN);
  await page.getByRole("button", { name: "Download " + FILE_NAME }).waitFor();
  await page.locator("#token-status", { hasText: "operators only" }).waitFor();
  // two more refreshes: the sections stay hidden and no error shows
  await new Promise((resolve) => setTimeout(resolve, 4500));
  const user = {
    workersVisible: await page.locator("#workers-section").isVisible(),
    totalsVisible: await page.locator("#totals-section").isVisible(),
    errorVisible: await page.locator("#error").isVisible(),
    errorText: await page.locator("#error").textContent(),
    workerRows: await page.locator("#workers tbody tr").count(),
  };

  step("an admin token");
  await useToken(page, ADMIN_TOKEN);
  const alive = page.locator('#workers tbody tr[data-status="alive"]');
  await waitFor(async () => (await alive.count()) === WORKERS, `${WORKERS} alive workers`);
  await page.locator("#t-workers", { hasText: `${WORKERS} / ${WORKERS}` }).waitFor();
  const admin = {
    workersVisible: await page.locator("#workers-section").isVisible(),
    totalsVisible: await page.locator("#totals-section").isVisible(),
    errorVisible: await page.locator("#error").isVisible(),
  };
  say("RESULT " + JSON.stringify({ user, admin, pageErrors }));
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
  process.stderr.write("dashboard_operators.spec.js: " + (err && err.stack || err) + "\n");
  process.exit(1);
});
