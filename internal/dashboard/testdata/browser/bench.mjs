// `nimbus bench ui`'s browser half: headless Chromium (playwright-core)
// opens the jobs page and a job page with a long log, RUNS times each, and
// prints one JSON line of milliseconds:
//   {"jobs_fcp": [...], "jobs_load": [...], "floor_fcp": [...], "log_usable": [...], "log_first_rows": [...]}
// jobs_fcp: the jobs page's first contentful paint; floor_fcp: the same for
// a one-line page that needs no server (what this Chromium on this machine
// cannot go below); log_first_rows: the job page until its first log rows
// are on screen; log_usable: until the whole log is loaded, split into
// lines and scrollable (body[data-log=complete]). All from the start of
// the navigation, by the page's own clock.
// Env: NIMBUS_URL, COOKIE_NAME, COOKIE, JOB_ID, CHROMIUM, RUNS.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const base = process.env.NIMBUS_URL;
const runs = +(process.env.RUNS || 5);
const profile = mkdtempSync(join(tmpdir(), 'nimbus-bench-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
  viewport: { width: 1280, height: 900 },
});
ctx.setDefaultTimeout(60000);
const out = { jobs_fcp: [], jobs_load: [], floor_fcp: [], log_first_rows: [], log_usable: [], log_lines: 0 };
// fcp is the current page's first contentful paint (-1: none in 2 s).
const fcp = (page) => page.evaluate(() => new Promise((resolve) => {
  new PerformanceObserver((l) => {
    const e = l.getEntries().find((x) => x.name === 'first-contentful-paint');
    if (e) resolve(e.startTime);
  }).observe({ type: 'paint', buffered: true });
  setTimeout(() => resolve(-1), 2000);
}));
try {
  const u = new URL(base);
  await ctx.addCookies([{ name: process.env.COOKIE_NAME, value: process.env.COOKIE, domain: u.hostname, path: '/', httpOnly: true, sameSite: 'Lax' }]);
  const page = ctx.pages()[0] || await ctx.newPage();
  // The first run of each warms up and is not counted.
  for (let i = 0; i < runs + 1; i++) {
    await page.goto('data:text/html,<!doctype html><title>floor</title><p>one line');
    const f = await fcp(page);
    if (i > 0) out.floor_fcp.push(Math.round(f));
  }
  for (let i = 0; i < runs + 1; i++) {
    // From another page of the dashboard, as a person moves around.
    await page.goto(base + '/ui/orgs');
    await page.goto(base + '/ui/jobs', { waitUntil: 'load' });
    const load = await page.evaluate(() => performance.getEntriesByType('navigation')[0].loadEventEnd);
    const f = await fcp(page);
    if (i > 0) { out.jobs_fcp.push(Math.round(f)); out.jobs_load.push(Math.round(load)); }
  }
  for (let i = 0; i < runs + 1; i++) {
    await page.goto(base + '/ui/orgs');
    await page.goto(base + '/ui/jobs/' + process.env.JOB_ID, { waitUntil: 'commit' });
    await page.waitForFunction(() => document.body && document.body.dataset.log === 'complete', null, { polling: 50 });
    const at = await page.evaluate(() => [+document.body.dataset.logFirstAt, +document.body.dataset.logCompleteAt]);
    out.log_lines = +(await page.evaluate(() => document.body.dataset.logLines));
    if (i > 0) { out.log_first_rows.push(at[0]); out.log_usable.push(at[1]); }
  }
  // Usable means scrollable: jump to the middle and see its rows.
  await page.evaluate(() => { const l = document.getElementById('log'); l.scrollTop = l.scrollHeight / 2; });
  await page.locator('#log .ln').first().waitFor();
  console.log(JSON.stringify(out));
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
