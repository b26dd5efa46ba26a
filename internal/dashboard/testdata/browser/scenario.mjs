// The dashboard in a real browser (Debian's Chromium through
// playwright-core), as a person uses it: sign in at the OpenID Provider,
// see why a queued job waits, watch it run with its log tailing live,
// search the log and every job's logs, create a token (with step-up) and
// revoke it, and look at every page. internal/dashboard/browser_test.go starts the server, the
// provider and a control endpoint that plays the job's agent, then runs
// this with:
//   NIMBUS_URL, CONTROL_URL, JOB_ID, CHROMIUM, SCREENSHOTS
// It prints one line per step and exits non-zero on the first failure.
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const base = process.env.NIMBUS_URL;
const control = process.env.CONTROL_URL;
const jobID = process.env.JOB_ID;
const shots = process.env.SCREENSHOTS;
mkdirSync(shots, { recursive: true });

const step = (s) => console.log('step: ' + s);
async function act(what) {
  const r = await fetch(control + what, { method: 'POST' });
  if (!r.ok) throw new Error(`control ${what}: ${r.status} ${await r.text()}`);
}
async function shot(page, name) {
  await page.screenshot({ path: join(shots, name + '.png'), fullPage: true });
}

const profile = mkdtempSync(join(tmpdir(), 'nimbus-chromium-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
  viewport: { width: 1280, height: 900 },
});
ctx.setDefaultTimeout(15000);
const errors = [];
let failed = null;
try {
  const page = ctx.pages()[0] || await ctx.newPage();
  page.on('dialog', (d) => d.accept());
  // Script errors fail the run; failed loads are logged (a refusal such
  // as the step-up page's 403 is one, and expected).
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) { errors.push(m.text()); console.log('console error: ' + m.text()); }
  });
  ctx.on('response', (r) => { if (r.status() >= 400) console.log(`  (${r.status()} ${r.request().method()} ${new URL(r.url()).pathname})`); });
  page.on('pageerror', (e) => { errors.push(String(e)); console.log('page error: ' + e); });
  failed = page;

  step('sign in');
  await page.goto(base + '/ui/jobs');
  await page.waitForURL(/\/login\?/);
  await shot(page, 'login');
  await page.click('[data-testid=provider-corp]');
  await page.fill('#username', 'alice');
  await page.fill('#password', 'pw-alice');
  await shot(page, 'provider-login');
  await page.click('button[type=submit]');
  await page.waitForURL(/\/ui\/jobs/);
  await page.getByTestId('user').filter({ hasText: 'alice@example.com' }).waitFor();

  step('why it waits');
  const row = page.locator(`#row-${jobID}`);
  await row.locator('[data-testid=wait]').filter({ hasText: 'No agent of this org offers labels linux' }).waitFor();
  await shot(page, 'jobs-waiting');

  // A second tab keeps the jobs list open: it must follow the job live.
  const list = await ctx.newPage();
  await list.goto(base + '/ui/jobs');
  await list.locator(`#row-${jobID}[data-state=queued]`).waitFor();

  step('job page, queued');
  await page.click(`#row-${jobID} a`);
  await page.waitForURL(new RegExp('/ui/jobs/' + jobID));
  await page.locator('#jobpanel [data-testid=wait]').filter({ hasText: 'No agent' }).waitFor();
  await page.locator('#jobpanel').filter({ hasText: 'Waiting since' }).waitFor();

  step('an agent takes it: the page follows without a reload');
  await act('/lease');
  await page.locator('#jobpanel [data-state=running]').waitFor();
  await list.locator(`#row-${jobID}[data-state=running]`).waitFor();

  step('the log tails live');
  await act('/log?part=1');
  await page.locator('#log .ln').filter({ hasText: 'compiling nimbus' }).waitFor();
  // The step was folded as it ended; its header shows.
  await page.locator('#log .fold').filter({ hasText: 'Install dependencies' }).waitFor();
  await act('/log?part=2');
  await page.locator('#log .ln').filter({ hasText: 'needle-in-the-log' }).waitFor();
  // ANSI colours became classes.
  await page.locator('#log .ln .fg2').filter({ hasText: 'PASS' }).first().waitFor();

  step('search in the log');
  await page.fill('[data-testid=log-search]', 'NEEDLE-IN');
  await page.locator('#log-matches').filter({ hasText: '1 of 1' }).waitFor();
  await page.locator('#log .ln.cur').filter({ hasText: 'needle-in-the-log' }).waitFor();
  // A folded step opens when a match is in it.
  await page.fill('[data-testid=log-search]', 'fetching left-pad');
  await page.locator('#log .ln.cur').filter({ hasText: 'fetching left-pad' }).waitFor();

  step('the job ends');
  await act('/complete');
  await page.waitForFunction(() => document.body.dataset.jobState === 'succeeded' && document.body.dataset.log === 'complete');
  await list.locator(`#row-${jobID}[data-state=succeeded]`).waitFor();
  await shot(page, 'job');
  await shot(list, 'jobs-live');

  step('line links');
  await page.goto(base + '/ui/jobs/' + jobID + '#L3');
  await page.locator('#log .ln.target#L3').waitFor();

  step('search across the jobs\' logs');
  await page.click('nav a[href="/ui/search"]');
  await page.fill('[data-testid=search] input[name=q]', 'needle-in-the-\\w+');
  await Promise.all([page.waitForURL(/\/ui\/search\?q=/), page.click('[data-testid=search] button')]);
  // The log pipeline writes lines in batches: search again until it has.
  for (let i = 0; !(await page.getByTestId('search-line').count()); i++) {
    if (i > 50) throw new Error('the search never found the line');
    await new Promise((r) => setTimeout(r, 100));
    await page.reload();
  }
  await page.getByTestId('search-line').filter({ hasText: 'found the needle-in-the-log here' }).waitFor();
  await shot(page, 'search-results');
  await page.getByTestId('search-line').locator('a').first().click();
  await page.waitForURL(new RegExp('/ui/jobs/' + jobID + '#L\\d+$'));
  await page.locator('#log .ln.target').filter({ hasText: 'needle-in-the-log' }).waitFor();

  step('a token needs a recent sign-in');
  const cookies = await ctx.cookies(base);
  const sess = cookies.find((c) => c.name === 'nimbus_session');
  if (!sess || !sess.httpOnly) throw new Error('no HttpOnly session cookie');
  await act('/stale?cookie=' + encodeURIComponent(sess.value));
  await page.goto(base + '/ui/tokens');
  await page.getByTestId('step-up').waitFor();
  await page.fill('[data-testid=new-token] input[name=name]', 'from-the-browser');
  await page.selectOption('[data-testid=new-token] select[name=role]', 'ci');
  await page.click('[data-testid=new-token] button');
  await page.getByTestId('step-up-needed').waitFor();
  await shot(page, 'step-up');
  await page.click('[data-testid=step-up]');
  await page.fill('#username', 'alice');
  await page.fill('#password', 'pw-alice');
  await page.click('button[type=submit]');
  await page.waitForURL(/\/ui\/tokens$/);
  await page.fill('[data-testid=new-token] input[name=name]', 'from-the-browser');
  await page.selectOption('[data-testid=new-token] select[name=role]', 'ci');
  await page.click('[data-testid=new-token] button');
  const secret = await page.getByTestId('token-secret').inputValue();
  if (!/^nmbu_[a-z0-9]+$/.test(secret)) throw new Error('no token shown: ' + secret);
  await shot(page, 'token-created');
  // Shown once.
  await page.goto(base + '/ui/tokens');
  if ((await page.content()).includes(secret)) throw new Error('the secret is shown again');
  if (await page.evaluate((s) => JSON.stringify(localStorage).includes(s) || location.href.includes(s), secret)) throw new Error('the secret leaked');
  await page.click('[data-testid="revoke-from-the-browser"]');
  await page.locator('tr', { hasText: 'from-the-browser' }).filter({ hasText: 'revoked' }).waitFor();

  step('every page');
  for (const p of ['agents', 'sessions', 'cache', 'insights', 'orgs', 'settings', 'audit', 'tokens', 'search']) {
    const r = await page.goto(base + '/ui/' + p);
    if (r.status() !== 200) throw new Error(`/ui/${p}: ${r.status()}`);
    await shot(page, p);
  }
  if (errors.length) throw new Error('console errors: ' + errors.join('; '));

  step('sign out');
  await page.goto(base + '/ui/jobs');
  await page.click('form[action="/logout"] button');
  await page.waitForURL(/\/login/);
  await page.goto(base + '/ui/jobs');
  await page.waitForURL(/\/login\?/);
  console.log('ok');
} catch (e) {
  if (failed) await shot(failed, 'failure').catch(() => {});
  throw e;
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
