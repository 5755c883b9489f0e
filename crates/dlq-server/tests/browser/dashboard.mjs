// Drives the dlq dashboard in headless Chromium, as an operator would:
// sign in, see every DLQ, open one, see its size and failure groups (each
// with its arrivals timeline and its verdict's rule and reason), reveal
// an HTML payload (shown as text, never run), preview a replay of a group,
// confirm it, watch it finish and see the pending count shrink.
//
// Run by crates/dlq-cli/tests/dashboard_browser.rs, which starts `dlq demo`
// and `dlq serve` and passes:
//   DLQ_URL             the server, e.g. http://127.0.0.1:41234
//   DLQ_OPERATOR_TOKEN  an operator token
//   DLQ_VIEWER_TOKEN    a viewer token
//   DLQ_ARTIFACTS       where screenshots go
//   DLQ_HTML_DLQ        the DLQ holding a record whose payload is HTML
//   CHROMIUM            the browser (default /usr/bin/chromium)
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const url = process.env.DLQ_URL;
const operator = process.env.DLQ_OPERATOR_TOKEN;
const viewer = process.env.DLQ_VIEWER_TOKEN;
const artifacts = process.env.DLQ_ARTIFACTS || 'browser-artifacts';
const htmlDlq = process.env.DLQ_HTML_DLQ || 'dlq.rss.events';
const dlq = 'dlq.polymarket.price_hourly';
assert.ok(url && operator && viewer, 'DLQ_URL, DLQ_OPERATOR_TOKEN and DLQ_VIEWER_TOKEN are required');
mkdirSync(artifacts, { recursive: true });

const profile = mkdtempSync(join(tmpdir(), 'dlq-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
  viewport: { width: 1280, height: 900 },
});
const problems = [];
const step = async (name, page) => {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
  console.log(`ok: ${name}`);
};

try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(20000);
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
    });
  });

  // A wrong token is refused; the viewer token works but cannot replay.
  await page.goto(`${url}/`);
  await page.fill('#token', 'not-a-token-0000000000');
  await page.click('#login-submit');
  await page.waitForFunction(() => document.querySelector('#login-error').textContent.includes('refused'));
  problems.length = 0; // the 401 itself is logged by the browser as an error
  await page.fill('#token', viewer);
  await page.click('#login-submit');
  await page.waitForSelector('#dlqs');
  assert.match(await page.textContent('#who'), /viewer/);
  await page.goto(`${url}/#/replay/${encodeURIComponent(dlq)}`);
  await page.waitForSelector('text=Replays need an operator token.');
  assert.equal(await page.locator('button[data-testid=reveal]').count(), 0);
  await page.click('#signout');

  // Sign in as an operator.
  await page.fill('#token', operator);
  await page.click('#login-submit');
  await page.goto(`${url}/#/`);
  await page.waitForSelector('#dlqs tbody tr');
  assert.match(await page.textContent('#who'), /operator/);
  const names = await page.locator('#dlqs tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.dlq));
  assert.deepEqual(names.sort(), ['dlq.polymarket.price_hourly', 'dlq.rss.events']);
  assert.deepEqual(await page.locator('#dlqs [data-testid=archived]').allTextContents(), ['0', '0'],
    'an archived column, nothing archived yet');
  await page.waitForSelector('#overview-chart .uplot');
  // The replay page left before signing out must not draw into this one.
  assert.equal(await page.locator('#replay-form').count(), 0, 'a stale page drew into the overview');
  await step('1-overview', page);

  // A payload that is HTML is shown as text, and never runs.
  await page.goto(`${url}/#/dlq/${encodeURIComponent(htmlDlq)}`);
  await page.waitForSelector('#records-table');
  await page.fill('#records-filter', 'error contains "<b>"');
  await page.press('#records-filter', 'Enter');
  await page.waitForFunction(() => document.querySelectorAll('#records-table tbody tr').length === 1);
  // Statuses are coloured by class; a pending record has the pending colour.
  assert.equal(await page.locator('#records-table [data-testid=status].pending').count(), 1,
    'a pending record has its status colour class');
  assert.notEqual(
    await page.locator('#records-table [data-testid=status]').evaluate((e) => getComputedStyle(e).backgroundColor),
    'rgba(0, 0, 0, 0)', 'the status colour is applied');
  const scripts = await page.locator('script').count();
  await page.click('#records-table button[data-testid=reveal]');
  const revealed = await page.textContent('[data-testid=revealed]');
  assert.match(revealed, /<script>window\.__pwned = 1<\/script>/);
  assert.equal(await page.evaluate(() => window.__pwned), undefined, 'the payload ran');
  assert.equal(await page.locator('script').count(), scripts, 'a script element was added');
  assert.equal(await page.locator('#records-table img').count(), 0, 'the payload became markup');
  await step('2-revealed-html', page);

  // Every group shows its arrivals, from its records' own failure times,
  // and its verdict with the rule and the reason. The test imported four
  // seed-format MessageTimedOut records failed at 05:10, 06:20, 06:40 and
  // 08:30 of one day: their group has four hourly buckets (07 empty) and
  // the verdict of the shipped triage rule.
  await page.waitForSelector('#groups-table tbody tr .group-timeline canvas');
  const groups = await page.locator('#groups-table tbody tr').evaluateAll((rows) => rows.map((r) => ({
    count: Number(r.querySelector('[data-testid=group-count]').textContent),
    total: Number(r.querySelector('[data-testid=group-timeline]').dataset.total),
    buckets: Number(r.querySelector('[data-testid=group-timeline]').dataset.buckets),
    step: Number(r.querySelector('[data-testid=group-timeline]').dataset.step),
    canvas: r.querySelector('[data-testid=group-timeline] canvas') !== null,
    verdict: r.querySelector('[data-testid=verdict]').textContent,
    rule: r.querySelector('[data-testid=verdict-rule]')?.textContent,
    reason: r.querySelector('[data-testid=verdict-reason]').textContent,
  })));
  for (const g of groups) {
    assert.equal(g.total, g.count, `a timeline adds up to its group: ${JSON.stringify(g)}`);
    assert.ok(g.canvas, `a timeline is drawn: ${JSON.stringify(g)}`);
    assert.ok(g.reason.length > 10 && g.rule, `a verdict has its rule and reason: ${JSON.stringify(g)}`);
  }
  const timedOut = groups.find((g) => g.rule === 'kafka.message_timed_out');
  assert.ok(timedOut, `no MessageTimedOut group: ${JSON.stringify(groups)}`);
  assert.deepEqual([timedOut.verdict, timedOut.count, timedOut.buckets, timedOut.step], ['transient', 4, 4, 3600]);
  assert.match(timedOut.reason, /broker did not acknowledge/);
  const cls = await page.locator('#groups-table [data-testid=verdict].transient').count();
  assert.ok(cls > 0, 'a transient verdict has its colour class');
  await step('2b-groups-triaged', page);

  // A DLQ: its size and its failure groups.
  await page.goto(`${url}/#/dlq/${encodeURIComponent(dlq)}`);
  await page.waitForSelector('#groups-table tbody tr');
  await page.waitForSelector('#dlq-chart .uplot');
  const before = Number(await page.textContent('#dlq-pending'));
  assert.ok(before > 0, `pending ${before}`);
  const firstGroup = page.locator('#groups-table tbody tr').first();
  const groupCount = Number(await firstGroup.locator('[data-testid=group-count]').textContent());
  const groupSum = (await page.locator('[data-testid=group-count]').allTextContents())
    .reduce((a, b) => a + Number(b), 0);
  assert.equal(groupSum, before, 'the groups add up to the pending count');
  await step('3-dlq', page);

  // Replay the first group: preview (dry run), then confirm.
  await firstGroup.locator('[data-testid=replay-group]').click();
  await page.waitForSelector('#replay-form');
  await page.selectOption('#replay-target', 'out');
  await page.click('#preview-button');
  await page.waitForSelector('#preview-matched');
  assert.equal(Number(await page.textContent('#preview-matched')), groupCount);
  assert.ok((await page.locator('#preview-samples tbody tr').count()) > 0);
  await step('4-preview', page);
  await page.click('#confirm-replay');
  await page.waitForFunction(() => document.querySelector('#job-status')?.textContent === 'done');
  assert.equal(Number(await page.textContent('#job-replayed')), groupCount);
  await step('5-replayed', page);

  // Back on the DLQ page, the pending count shrank by the group.
  await page.click('#back-to-dlq');
  await page.waitForFunction(
    (b) => { const e = document.querySelector('#dlq-pending'); return e && Number(e.textContent) < b; },
    before,
  );
  assert.equal(Number(await page.textContent('#dlq-pending')), before - groupCount);
  await step('6-after', page);

  assert.deepEqual(problems, [], 'the page logged errors');
  console.log(`dashboard ok: replayed ${groupCount} records, pending ${before} -> ${before - groupCount}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
