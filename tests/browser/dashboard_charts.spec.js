// SPDX-License-Identifier: MIT
// dashboard_charts.spec.js - the dashboard's charts of the last hour, in
// Debian's Chromium (headless, through playwright-core), after an upload
// burst the Python side made: each chart is drawn (its canvas has painted
// pixels in the line colour) and shows the load (its peak is above 0).
//
// Started by tests/integration/test_dashboard.py, which owns the cluster.
// Protocol on stdout: STEP <what> (progress), then RESULT <json>.
//
// Environment: ECHOFS_URL (the master), ECHOFS_TOKEN (a user token),
// SCREENSHOT (a PNG path), CHROMIUM (default /usr/bin/chromium),
// STEP_TIMEOUT_MS (default 30000). Exits 0 when every step passed, 1 with
// the reason on stderr otherwise.
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
const SCREENSHOT = env("SCREENSHOT");
const CHROMIUM = env("CHROMIUM", "/usr/bin/chromium");
const TIMEOUT = Number(env("STEP_TIMEOUT_MS", "30000"));
const CHARTS = ["requests", "bytes", "latency", "repair", "disk"];

const say = (line) => process.stdout.write(line + "\n");
const step = (what) => say("STEP " + what);

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
  page.on("console", (msg) => { if (msg.type() === "error") pageErrors.push(msg.text()); });
  try {
    await run(page, pageErrors);
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

// What one chart shows: the peak it recorded, its points, its caption, and
// how many of its canvas' pixels are painted in a line colour (not the
// grey axes, not the background).
async function chart(page, name) {
  return page.evaluate((id) => {
    const figure = document.getElementById("chart-" + id);
    const canvas = figure.querySelector("canvas");
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0;
    for (let i = 0; i < data.length; i += 4) {
      const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
      const grey = Math.abs(r - g) < 16 && Math.abs(g - b) < 16;
      if (a > 128 && !grey) painted++;
    }
    return { peak: Number(figure.dataset.peak || "0"), points: Number(figure.dataset.points || "0"),
             caption: figure.querySelector("figcaption").textContent, painted,
             width: canvas.width, height: canvas.height };
  }, name);
}

async function run(page, pageErrors) {
  step("open the page without a token: no charts");
  await page.goto(BASE + "/");
  await page.locator("#health", { hasText: "ok" }).waitFor();
  const hiddenWithoutToken = !(await page.locator("#charts-section").isVisible());

  step("use the token");
  await page.getByLabel(/^Token/).fill(TOKEN);
  await page.getByRole("button", { name: "Use token" }).click();
  await page.locator("#charts-section").waitFor({ state: "visible" });

  step("wait for the burst in every chart");
  const charts = {};
  await waitFor(async () => {
    for (const name of CHARTS) charts[name] = await chart(page, name);
    return ["requests", "bytes", "latency", "disk"].every((n) => charts[n].peak > 0 &&
                                                                charts[n].painted > 0) &&
           charts.repair.points > 0;
  }, "every chart to show the upload burst");
  await page.locator("#charts-section").screenshot({ path: SCREENSHOT });
  const history = await page.evaluate(async (token) => {
    const r = await fetch("/api/v1/stats/history", { headers: { Authorization: "Bearer " + token } });
    return r.json();
  }, TOKEN);
  say("RESULT " + JSON.stringify({ hiddenWithoutToken, charts, history, pageErrors }));
}

// Polls an async predicate (the page refreshes itself every 2 s).
async function waitFor(predicate, what) {
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${TIMEOUT} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write("dashboard_charts.spec.js: " + (err && err.stack || err) + "\n");
  process.exit(1);
});
