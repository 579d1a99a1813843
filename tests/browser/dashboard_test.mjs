// Drives headless Chromium (puppeteer-core) through `casecore serve`'s dashboard. Started by
// tests/browser/driver.cpp, which seeded the database (tests/serve_seed.hpp), started the server and
// checks the database afterwards. Environment: CASECORE_BASE_URL, CASECORE_CHROMIUM, CASECORE_NODE_DIR
// (where npm ci installed puppeteer-core), CASECORE_OPERATOR_TOKEN, CASECORE_JOB_{HOSTILE,UNTOUCHED,
// QUEUED,RUNNING}, CASECORE_HOSTILE_OPERATION, and optionally CASECORE_SCREENSHOTS (a folder for PNGs).
// Exit 0 when every check passed, 1 otherwise (each failure printed).
import { createRequire } from 'node:module';
import path from 'node:path';

const env = process.env;
const require = createRequire(path.join(env.CASECORE_NODE_DIR, 'package.json'));
const puppeteer = require('puppeteer-core');

const base = env.CASECORE_BASE_URL;
const job = {
  hostile: env.CASECORE_JOB_HOSTILE,
  untouched: env.CASECORE_JOB_UNTOUCHED,
  queued: env.CASECORE_JOB_QUEUED,
  running: env.CASECORE_JOB_RUNNING,
};
let failures = 0;
let checks = 0;
function check(ok, what) {
  checks++;
  if (!ok) {
    failures++;
    console.log(`FAIL: ${what}`);
  }
}

const browser = await puppeteer.launch({
  executablePath: env.CASECORE_CHROMIUM,
  headless: true,
  // --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
});
const dialogs = [];
let page;
try {
  page = await browser.newPage();
  await page.setViewport({ width: 1100, height: 700 });
  page.on('dialog', async (d) => { dialogs.push(d.message()); await d.dismiss(); });
  const shot = async (name) => {
    if (env.CASECORE_SCREENSHOTS) await page.screenshot({ path: path.join(env.CASECORE_SCREENSHOTS, name) });
  };
  /** document.title and window.pwned: what the seeded scripts would set if any of them ran. */
  const pwned = () => page.evaluate(() => document.title.includes('pwned') || typeof window.pwned !== 'undefined');

  // Overview.
  let res = await page.goto(`${base}/`);
  check(res.status() === 200, `overview loads (HTTP ${res.status()})`);
  check((res.headers()['content-security-policy'] || '').includes("frame-ancestors 'none'"), 'CSP header with frame-ancestors');
  check(await page.$eval('h1', (e) => e.textContent) === 'Overview', 'overview heading');
  const states = await page.$$eval('#job-states tr td:first-child', (tds) => tds.map((td) => td.textContent));
  check(JSON.stringify(states) === JSON.stringify(['waiting', 'blocked', 'queued', 'paused', 'running', 'succeeded', 'failed', 'cancelled']), `job states listed: ${states}`);
  await shot('dashboard-overview.png');

  // The job list renders the hostile operation as text, and nothing ran.
  res = await page.goto(`${base}/jobs?limit=100`);
  check(res.status() === 200, 'job list loads');
  const ops = await page.$$eval('#jobs td.op', (tds) => tds.map((td) => td.textContent));
  check(ops.includes(env.CASECORE_HOSTILE_OPERATION), 'hostile operation shown as text in the list');
  check(!(await pwned()), 'no seeded script ran on the job list');
  check(await page.$('#jobs script') === null && await page.$('#jobs img') === null, 'no element made from seeded markup');

  // Filters: the form's state select and operation field.
  await page.select('#filters select[name=state]', 'failed');
  await Promise.all([page.waitForNavigation(), page.click('#filters button[type=submit]')]);
  const failedStates = await page.$$eval('#jobs tr td:nth-child(2)', (tds) => tds.map((td) => td.textContent));
  check(failedStates.length === 2 && failedStates.every((s) => s === 'failed'), `state filter: ${failedStates}`);
  await page.goto(`${base}/jobs`);
  await page.type('#filters input[name=operation]', 'beta');
  await page.$eval('#filters input[name=limit]', (e) => { e.value = '20'; });
  await Promise.all([page.waitForNavigation(), page.click('#filters button[type=submit]')]);
  const betaOps = await page.$$eval('#jobs td.op', (tds) => tds.map((td) => td.textContent));
  check(betaOps.length === 20 && betaOps.every((o) => o === 'beta'), `operation filter, first page of 20: ${betaOps.length}`);
  const firstIds = await page.$$eval('#jobs tr td:first-child', (tds) => tds.map((td) => Number(td.textContent)));
  await shot('dashboard-jobs.png');
  await Promise.all([page.waitForNavigation(), page.click('#older')]);
  const olderIds = await page.$$eval('#jobs tr td:first-child', (tds) => tds.map((td) => Number(td.textContent)));
  const olderOps = await page.$$eval('#jobs td.op', (tds) => tds.map((td) => td.textContent));
  check(olderIds.length === 10 && olderOps.every((o) => o === 'beta'), `second page holds the other 10 beta jobs: ${olderIds.length}`);
  check(Math.max(...olderIds) < Math.min(...firstIds), 'second page is older than the first');

  // The hostile job's page: every hostile value is text; nothing ran.
  res = await page.goto(`${base}/jobs/${job.hostile}`);
  check(res.status() === 200, 'job page loads');
  check(await page.$eval('#operation', (e) => e.textContent) === env.CASECORE_HOSTILE_OPERATION, 'hostile operation as text on the job page');
  check((await page.$eval('#last-error', (e) => e.textContent)).startsWith('</pre><script>'), 'hostile error as text');
  check((await page.$eval('#payload', (e) => e.textContent)).startsWith('<script>'), 'hostile payload as text');
  check((await page.title()) === `Job ${job.hostile} · casecore`, `title untouched: ${await page.title()}`);
  check(!(await pwned()), 'no seeded script ran on the job page');
  const stageRows = await page.$$eval('#stages tr', (trs) => trs.length - 1);
  check(stageRows === 2, 'both stages listed');
  check(await page.$('#retry') === null, 'no retry button before logging in');

  // Leases and counters.
  await page.goto(`${base}/leases`);
  check((await page.$eval('#leases', (e) => e.textContent)).includes('host-a'), 'lease holder shown');
  await page.goto(`${base}/counters`);
  check((await page.$eval('#counters', (e) => e.textContent)).includes('invoice'), 'counter shown');

  // Token-less POST (no session): 403, from Node's own HTTP client.
  let r = await fetch(`${base}/jobs/${job.untouched}/retry`, { method: 'POST', body: new URLSearchParams({ csrf: 'x' }), redirect: 'manual' });
  check(r.status === 403, `token-less POST refused (HTTP ${r.status})`);

  // Log in: a wrong token first, then the right one.
  await page.goto(`${base}/login`);
  await page.type('input[name=token]', 'not-the-token-at-all');
  res = (await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]))[0];
  check(res.status() === 403, 'wrong operator token refused');
  await page.type('input[name=token]', env.CASECORE_OPERATOR_TOKEN);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  const cookies = await page.cookies();
  const session = cookies.find((c) => c.name === 'casecore_session');
  check(session && session.httpOnly && session.sameSite === 'Strict', 'HttpOnly SameSite=Strict session cookie');
  check(await page.evaluate(() => document.cookie) === '', 'the session cookie is not readable from the page');

  // A cross-site form (another origin posting to the dashboard): the browser does not send the
  // SameSite=Strict cookie and the Origin is foreign: refused.
  const attack = `<form method="post" action="${base}/jobs/${job.untouched}/retry"><input name="csrf" value="forged"></form>` +
                 '<script>document.forms[0].submit()</script>';
  res = (await Promise.all([page.waitForNavigation(), page.goto(`data:text/html,${encodeURIComponent(attack)}`)]))[0];
  check(res && res.status() === 403, `cross-site form POST refused (HTTP ${res && res.status()})`);

  // CSRF-less POST with a valid session cookie: refused.
  const cookieHeader = `casecore_session=${session.value}`;
  r = await fetch(`${base}/jobs/${job.untouched}/retry`, { method: 'POST', headers: { Cookie: cookieHeader }, body: new URLSearchParams({}), redirect: 'manual' });
  check(r.status === 403, `CSRF-less POST refused (HTTP ${r.status})`);
  r = await fetch(`${base}/jobs/${job.untouched}/retry`, { method: 'POST', headers: { Cookie: cookieHeader }, body: new URLSearchParams({ csrf: '0'.repeat(64) }), redirect: 'manual' });
  check(r.status === 403, `wrong CSRF token refused (HTTP ${r.status})`);

  // Retry the hostile failed job and cancel the queued one through the buttons.
  await page.goto(`${base}/jobs/${job.hostile}`);
  await shot('dashboard-job.png');
  await Promise.all([page.waitForNavigation(), page.click('#retry')]);
  check(await page.$eval('#state', (e) => e.textContent) === 'queued', 'retry: the job page shows it queued');
  check(!(await pwned()), 'no seeded script ran after the retry');
  await page.goto(`${base}/jobs/${job.queued}`);
  await Promise.all([page.waitForNavigation(), page.click('#cancel')]);
  check(await page.$eval('#state', (e) => e.textContent) === 'cancelled', 'cancel: the job page shows it cancelled');

  // Pause the operation "beta" from the overview's form, see its jobs paused, resume it.
  await page.goto(`${base}/`);
  await page.type('#pause-form input[name=operation]', 'beta');
  await page.type('#pause-form input[name=reason]', '<script>document.title="pwned"</script>');
  await Promise.all([page.waitForNavigation(), page.click('#pause-form button[type=submit]')]);
  const pauseRows = await page.$$eval('#pauses tr td:first-child', (tds) => tds.map((td) => td.textContent));
  check(JSON.stringify(pauseRows) === JSON.stringify(['beta']), `pause listed: ${pauseRows}`);
  check(!(await pwned()), 'the pause reason did not run');
  await page.goto(`${base}/jobs?state=paused&limit=100`);
  const pausedOps = await page.$$eval('#jobs td.op', (tds) => tds.map((td) => td.textContent));
  check(pausedOps.length === 30 && pausedOps.every((o) => o === 'beta'), `paused filter shows the 30 beta jobs: ${pausedOps.length}`);
  await page.goto(`${base}/`);
  await Promise.all([page.waitForNavigation(), page.click('#pauses button.resume')]);
  check(await page.$('#pauses') === null, 'resumed: no pause left');
  check(dialogs.length === 0, `no dialog opened: ${dialogs}`);
} catch (e) {
  failures++;
  console.log(`FAIL: ${e.stack || e}`);
  if (page) console.log(`on ${page.url()}:\n${(await page.content()).slice(0, 3000)}`);
} finally {
  await browser.close();
}
console.log(`${checks} browser checks, ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);
