// report.mjs FILE TASKS -- a dtask.performance_report page in headless
// Chromium (Debian's /usr/bin/chromium), loaded from the file with the
// network blocked (the report must be standalone): no console errors, the
// task stream drawing has TASKS rects (or at least one when TASKS is 0), and
// its inline script ran.  Exit status 0 only if all of it holds.
import { chromium } from "playwright-core";
import { pathToFileURL } from "node:url";

const [file, tasksArg] = process.argv.slice(2);
const want = Number(tasksArg || 0);
const fail = (msg) => { console.error("report test: " + msg); process.exitCode = 1; };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [], fetched = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.route("**/*", (route) => {
    const u = route.request().url();
    if (u.startsWith("file:")) return route.continue();
    fetched.push(u);
    return route.abort();
  });
  await page.goto(pathToFileURL(file).href, { waitUntil: "load", timeout: 20000 });
  const rects = await page.$$eval("#task-stream rect.task", (rs) => rs.length);
  const ran = await page.evaluate(() => document.body.dataset.tasks);
  const rows = await page.$$eval("#functions tr", (rs) => rs.length);
  if (want ? rects !== want : rects < 1) fail(`the task stream has ${rects} tasks, not ${want || ">= 1"}`);
  if (ran !== String(rects)) fail(`the inline script did not run (data-tasks=${ran})`);
  if (rows < 2) fail("the functions table is empty");
  if (fetched.length) fail("the report fetched from the network: " + fetched.join(" "));
  if (errors.length) fail("console errors: " + errors.join(" | "));
  console.log(`report test: ${rects} tasks drawn, ${rows - 1} functions`);
} finally {
  await browser.close();
}
