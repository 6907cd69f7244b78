// dashboard.mjs URL WORKERS SCREENSHOT -- the dashboard in headless Chromium
// (Debian's /usr/bin/chromium) while a graph runs: the page loads with no
// console errors, the progress bars advance, the workers table lists every
// worker, and a screenshot is saved.  Exit status 0 only if all of it holds.
import { chromium } from "playwright-core";

const [url, workersArg, shot] = process.argv.slice(2);
const nworkers = Number(workersArg);
const fail = (msg) => { console.error("dashboard test: " + msg); process.exitCode = 1; };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url, { waitUntil: "load", timeout: 20000 });
  // a function's progress bar appears, with a count "done / total"
  await page.waitForSelector(".fn", { timeout: 20000 });
  const progress = async () => page.$$eval(".fn", (rows) =>
    rows.reduce((s, r) => s + Number(r.dataset.finished || 0), 0));
  const first = await progress();
  let later = first;
  for (let i = 0; i < 40 && later <= first; i++) {
    await page.waitForTimeout(250);
    later = await progress();
  }
  if (!(later > first)) fail(`progress bars did not advance (${first} then ${later} finished)`);
  // every worker is listed
  await page.waitForFunction((n) => document.querySelectorAll("tr.worker").length === n,
                             nworkers, { timeout: 10000 }).catch(() => {});
  const names = await page.$$eval("tr.worker td:first-child", (tds) => tds.map((t) => t.textContent));
  for (let i = 0; i < nworkers; i++)
    if (!names.includes(`local-worker-${i}`)) fail(`worker local-worker-${i} is not in the table (${names})`);
  // the summary shows the workers too
  const shown = await page.textContent("#workers");
  if (Number(shown) !== nworkers) fail(`the summary says ${shown} workers, not ${nworkers}`);
  await page.waitForTimeout(1200); // let the task stream fill for the picture
  await page.screenshot({ path: shot, fullPage: true });
  if (errors.length) fail("console errors: " + errors.join(" | "));
  console.log(`dashboard test: ${names.length} workers listed, progress ${first} -> ${later}, ` +
              `screenshot ${shot}`);
} finally {
  await browser.close();
}
