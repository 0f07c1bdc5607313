// The dashboard in a real browser, for test_stream.c:
//   node dashboard.js URL QUEUE
// Opens URL (a worker's /dashboard) in Debian's chromium, headless, through
// puppeteer-core; prints READY once the page shows the worker and its event
// stream is connected (the test then publishes dash-1..3, and bad-1, which
// the handler rejects), and OK once the page's DOM shows: a worker process
// with a pid, the queue QUEUE, job.succeeded of dash-1..3, the dead letter
// of bad-1 by reason "rejected", and no error of the page. Exits 1 with the
// reason otherwise; a missing chromium is a failure, not a skip.
"use strict";
const fs = require("fs");
const puppeteer = require("puppeteer-core");

const [url, queue] = process.argv.slice(2);
const candidates = [process.env.CHROMIUM, "/usr/bin/chromium",
                    "/usr/bin/chromium-browser"].filter(Boolean);
const chromium = candidates.find(p => fs.existsSync(p));

function fail(why) {
  console.log("FAIL " + why);
  process.exit(1);
}

async function until(page, what, fn, arg, ms = 30000) {
  try {
    await page.waitForFunction(fn, { timeout: ms, polling: 100 }, arg);
  } catch (e) {
    const text = await page.evaluate(() => document.body.innerText);
    fail(what + " never shown; the page says:\n" + text);
  }
}

(async () => {
  if (!url || !queue) fail("usage: node dashboard.js URL QUEUE");
  if (!chromium) fail("no chromium (apt-get install chromium; scripts/setup does)");
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const errors = [];
  try {
    const page = await browser.newPage();
    page.on("pageerror", e => errors.push(String(e)));
    page.on("console", m => { if (m.type() === "error") errors.push(m.text()); });
    const r = await page.goto(url, { waitUntil: "load" });
    if (!r || r.status() !== 200) fail("GET " + url + ": " + (r && r.status()));
    await until(page, "a worker process",
      () => [...document.querySelectorAll("#workers tbody tr")]
              .some(tr => /^\d+$/.test(tr.dataset.pid || "")));
    await until(page, "the queue " + queue,
      q => !!document.querySelector(`#queues tbody tr[data-queue="${q}"]`), queue);
    await until(page, "the connected stream",
      () => document.getElementById("stream").textContent === "connected");
    console.log("READY");
    for (const id of ["dash-1", "dash-2", "dash-3"])
      await until(page, "job.succeeded of " + id,
        j => !!document.querySelector(
          `#events li[data-event="job.succeeded"][data-job="${j}"]`), id);
    await until(page, "job.dead_lettered of bad-1",
      () => !!document.querySelector(
        '#events li[data-event="job.dead_lettered"][data-job="bad-1"]'));
    await until(page, "the dead letter by reason",
      () => !!document.querySelector('#dead tbody tr[data-reason="rejected"]'));
    await until(page, "the handler's counts",
      () => {
        const tr = document.querySelector('#handlers tbody tr[data-handler="h"]');
        return tr && tr.children[5].textContent === "3";
      });
    if (errors.length) fail("errors in the page: " + errors.join("; "));
    console.log("OK");
  } finally {
    await browser.close();
  }
})().catch(e => fail(e.stack || String(e)));
