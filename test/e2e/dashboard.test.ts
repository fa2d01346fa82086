import { existsSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeFrontend } from '../../src/simulation/fake-frontend.js';
import { ADMIN, ADMIN_TOKEN, TEST_KEY, repoRoot, tempDir, waitFor } from '../helpers.js';
import { serviceEnvFor } from '../simulation.js';
import { startService, type ServiceProcess } from './service-process.js';

// The functions given to page.evaluate() run in the page; these are its globals there (the project compiles without the DOM library).
declare const document: any;
declare const window: any;
type HTMLFormElement = any;

/** Debian's Chromium, installed by .ci/install-ui-tools; never a browser a package downloads. */
const CHROMIUM = process.env.TASKD_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
// CI installs it: there a missing browser is a failure, not a skip.
if (!haveChromium && process.env.CI === 'true') throw new Error(`no Chromium at ${CHROMIUM}: .ci/install-ui-tools installs it`);
if (!haveChromium) console.warn(`dashboard browser test skipped: no Chromium at ${CHROMIUM} (bash .ci/install-ui-tools installs it)`);

/** Screenshots for CI's artifacts; the folder is git-ignored. */
export const ARTIFACTS = path.join(repoRoot, 'test-artifacts');
const FIRST_LOAD_LIMIT = 150 * 1024;
const CHROMIUM_FLAGS = ['--headless', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let sim: FakeFrontend;
let service: ServiceProcess;
let context: BrowserContext;
let page: Page;
/** A page of another origin on the same host, as a hosted site's would be. */
let evil: http.Server;
let evilUrl: string;

const api = async (method: string, url: string) => {
  const response = await fetch(`${service.url}${url}`, { method, headers: ADMIN });
  return (await response.json()) as Record<string, unknown>;
};
const taskState = async (nid: number) => (await api('GET', `/v1/tasks/${nid}`)).state as string;
const shot = (name: string) => page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });

describe.skipIf(!haveChromium)('the dashboard in a real browser (Debian Chromium, headless)', () => {
  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    sim = new FakeFrontend({ key: TEST_KEY });
    await sim.listen();
    const logDir = await tempDir('taskd-ui-logs-');
    service = await startService(serviceEnvFor(sim, logDir, { TASKD_ADMIN_TOKEN: ADMIN_TOKEN, TASKD_STATE_DIR: path.join(logDir, 'state'), TASKD_RECONCILE_INTERVAL: '2' }));
    sim.serviceUrl = service.url;
    evil = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`<!doctype html><form id="f" method="post" action="${service.url}/v1/queue/pause"></form>`);
    });
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve));
    evilUrl = `http://127.0.0.1:${(evil.address() as AddressInfo).port}`;
    const userDataDir = await tempDir('taskd-chromium-');
    // As root Chromium refuses to start without --no-sandbox; the profile is fresh for every run.
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: [...CHROMIUM_FLAGS, ...(process.getuid?.() === 0 ? ['--no-sandbox'] : [])],
      viewport: { width: 1000, height: 900 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(10_000);
  }, 60_000);

  afterAll(async () => {
    await context?.close();
    service?.child.kill('SIGTERM');
    await service?.exited;
    await sim?.close();
    await new Promise((resolve) => evil?.close(resolve));
  });

  it('shows a client without the token the login form, not the data, and it cannot act', async () => {
    await sim.addTask({ rid: 90, type: 'verify', seconds: 0.1 });
    const answer = await page.goto(`${service.url}/ui`);
    expect(answer?.status()).toBe(401);
    expect(await page.locator('form#login input[type=password]').isVisible()).toBe(true);
    expect(await page.locator('#overview').count()).toBe(0);
    const tries = await page.evaluate(async () => {
      const calls = [fetch('v1/queue/pause', { method: 'POST' }), fetch('v1/tasks/1'), fetch('v1/events')];
      return (await Promise.all(calls)).map((r) => r.status);
    });
    expect(tries).toEqual([401, 401, 401]);
    expect((await api('GET', '/v1/queue')).paused).toBe(false);
    await shot('login');
  });

  it('signs in once into an HttpOnly, SameSite=Strict cookie, and loads the live page under 150 KB', async () => {
    const transferred: Array<Promise<number>> = [];
    const urls: string[] = [];
    page.on('response', (response) => {
      // The event stream never ends; its bytes are not part of the load.
      if ((response.headers()['content-type'] ?? '').startsWith('text/event-stream')) return;
      urls.push(response.url());
      transferred.push(response.request().sizes().then((s) => s.responseHeadersSize + s.responseBodySize));
    });
    await page.goto(`${service.url}/ui`);
    await page.fill('#token', ADMIN_TOKEN);
    await page.press('#token', 'Enter');
    await page.waitForSelector('#conn.ok');
    await page.waitForSelector('#charts svg');
    const bytes = (await Promise.all(transferred)).reduce((a, b) => a + b, 0);
    console.log(`dashboard first load: ${bytes} bytes in ${urls.length} responses, the login page included`);
    expect(bytes).toBeLessThan(FIRST_LOAD_LIMIT);
    expect(urls.every((u) => u.startsWith(service.url))).toBe(true);
    expect(page.url()).toBe(`${service.url}/ui`);
    const [cookie] = await context.cookies(service.url);
    expect(cookie).toMatchObject({ name: 'taskd_admin', httpOnly: true, sameSite: 'Strict', path: '/' });
    expect(await page.evaluate(() => document.cookie)).toBe('');
    page.removeAllListeners('response');
  });

  it('shows a queued task running within a second without a reload, the next of its site waiting for it, and its log streaming', async () => {
    await page.evaluate(() => ((window as unknown as { sameDocument: boolean }).sameDocument = true));
    const queuedAt = Date.now();
    const first = await sim.addTask({ rid: 1, type: 'verify', seconds: 4 });
    await page.locator(`#running [data-nid="${first.nid}"]`).waitFor();
    const shownAfter = Date.now() - queuedAt;
    console.log(`a queued task shown running after ${shownAfter} ms`);
    expect(shownAfter).toBeLessThan(1000);
    const second = await sim.addTask({ rid: 1, type: 'backup', seconds: 0.5 });
    const waiting = page.locator(`#queued [data-nid="${second.nid}"] .waiting`);
    await expect.poll(() => waiting.textContent()).toContain(`busy with task ${first.nid}`);
    expect(await waiting.getAttribute('data-reason')).toBe('lane_busy');
    expect(await page.locator('#queued h3').first().textContent()).toContain('rid:1');
    // The last lines of its output on the overview, then the whole log as it is written on its page.
    const tail = page.locator(`#running [data-nid="${first.nid}"] .tail`);
    await expect.poll(() => tail.textContent(), { timeout: 5000 }).toContain('Running provision-verify');
    expect((await tail.textContent())!.split('\n').filter((line) => line.startsWith('---'))).toEqual([]);
    await shot('dashboard');
    // The README's picture: the top of the page, 1000 px wide (docs/images/dashboard.png is this file
    // through `pngquant 32 --strip`).
    await page.screenshot({ path: path.join(ARTIFACTS, 'readme-dashboard.png'), clip: { x: 0, y: 0, width: 1000, height: 560 } });
    await page.click(`#running [data-nid="${first.nid}"] a`);
    await page.locator('#task-page').waitFor();
    await expect.poll(() => page.locator('#task-log').textContent()).toContain('step 1 of 4');
    const early = (await page.locator('#task-log').textContent())!;
    expect(early).not.toContain('Command dispatched successfully');
    expect(await taskState(first.nid)).toBe('running');
    await expect.poll(() => page.locator('#task-log').textContent(), { timeout: 8000 }).toContain('Command dispatched successfully');
    await expect.poll(() => page.locator('#log-state').textContent()).toBe('ended');
    expect(await page.locator('#task-log .log-success').count()).toBe(1);
    // The output ends before the outcome is read from Aegir: the state follows in a task event.
    await expect.poll(() => page.locator('#task-title .state').textContent()).toBe('succeeded');
    const fields = (await page.locator('#task-fields').textContent())!;
    for (const label of ['Attempts', "Aegir's status", 'success (1)', 'Exit code', 'Received', 'Started', 'Ended', 'Lane', 'rid:1']) expect(fields).toContain(label);
    expect(await page.locator('#task-attempts li').count()).toBe(1);
    await shot('task');
    // An action the service refuses shows its error code.
    await page.click('#task-actions button:text("Resolve orphan")');
    await expect.poll(() => page.locator('#notice').textContent()).toContain('TASKD_ERR_ORPHAN_NOT_FOUND');
    await page.goBack();
    await page.locator('#overview').waitFor();
    await waitFor(async () => (await taskState(second.nid)) === 'succeeded', { timeoutMs: 10_000 });
    await expect.poll(() => page.locator(`#history tbody tr[data-nid="${second.nid}"]`).count()).toBe(1);
    expect(await page.evaluate(() => (window as unknown as { sameDocument?: boolean }).sameDocument)).toBe(true);
  });

  it('filters the history by state, task type and site, and opens a task by its nid', async () => {
    const failed = await sim.addTask({ rid: 7, type: 'delete', behaviour: 'error', seconds: 0.1 });
    await expect.poll(() => page.locator(`#history tbody tr[data-nid="${failed.nid}"]`).count(), { timeout: 8000 }).toBe(1);
    await page.selectOption('#filters select[name=state]', 'failed');
    expect(await page.locator('#history tbody tr').count()).toBe(1);
    await page.selectOption('#filters select[name=state]', '');
    await page.selectOption('#filters select[name=type]', 'backup');
    expect((await page.locator('#history tbody tr td:nth-child(2)').allTextContents()).every((t) => t === 'backup')).toBe(true);
    await page.selectOption('#filters select[name=type]', '');
    await page.fill('#filters input[name=site]', 'rid:7');
    expect(await page.locator('#history tbody tr').count()).toBe(1);
    await page.fill('#filters input[name=site]', '');
    await page.fill('#filters input[name=nid]', String(failed.nid));
    await page.press('#filters input[name=nid]', 'Enter');
    await expect.poll(() => page.locator('#task-title').textContent()).toContain(`Task ${failed.nid}`);
    await page.goto(`${service.url}/ui#`);
    await page.waitForSelector('#conn.ok');
  });

  it('pauses: shows paused and a queued task stays queued; resumes', async () => {
    await page.click('#pause');
    await expect.poll(() => page.locator('#notice').textContent()).toBe('Pause: done (paused)');
    await page.locator('#paused-badge').waitFor();
    const held = await sim.addTask({ rid: 2, type: 'install', seconds: 0.2 });
    const waiting = page.locator(`#queued [data-nid="${held.nid}"] .waiting`);
    await expect.poll(() => waiting.getAttribute('data-reason')).toBe('paused');
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(await taskState(held.nid)).toBe('queued');
    expect(await page.locator(`#queued [data-nid="${held.nid}"]`).count()).toBe(1);
    await shot('paused');
    await page.click('#resume');
    await expect.poll(() => page.locator('#notice').textContent()).toBe('Resume: done (resumed)');
    await waitFor(async () => (await taskState(held.nid)) === 'succeeded', { timeoutMs: 10_000 });
    expect(await page.locator('#paused-badge').isHidden()).toBe(true);
  });

  it('keeps a click whose press and release straddle a live update of the list', async () => {
    const hung = await sim.addTask({ rid: 4, type: 'backup', behaviour: 'hang', seconds: 0.2 });
    const stop = page.locator(`#running [data-nid="${hung.nid}"] button:text("Stop")`);
    await stop.waitFor();
    // Its last line in the card's tail: the tail grows no more, so the button stays where it is measured.
    await expect.poll(() => page.locator(`#running [data-nid="${hung.nid}"] .tail`).textContent(), { timeout: 10_000 }).toContain('Waiting for a lock');
    const box = (await stop.boundingBox())!;
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.mouse.down();
    // Every queue event rebuilds the lists: without holding them, the release lands on a new button and no click fires.
    await api('POST', '/v1/queue/pause');
    await new Promise((resolve) => setTimeout(resolve, 500));
    let asked = '';
    page.once('dialog', (dialog) => {
      asked = dialog.message();
      void dialog.dismiss();
    });
    await page.mouse.up();
    await expect.poll(() => asked).toContain(`Stop task ${hung.nid}?`);
    // Held only until the release: the pause shows once the button is let go.
    await page.locator('#paused-badge').waitFor();
    await api('POST', '/v1/queue/resume');
    await page.locator('#paused-badge').waitFor({ state: 'hidden' });
    await api('DELETE', `/v1/tasks/${hung.nid}?force=1`);
    await waitFor(async () => (await taskState(hung.nid)) === 'cancelled', { timeoutMs: 15_000 });
  });

  it('stops a running task after a confirmation, and cancels a queued one', async () => {
    const hung = await sim.addTask({ rid: 3, type: 'migrate', behaviour: 'hang', seconds: 0.2 });
    const next = await sim.addTask({ rid: 3, type: 'verify', seconds: 0.1 });
    const card = page.locator(`#running [data-nid="${hung.nid}"]`);
    await card.waitFor();
    await page.locator(`#queued [data-nid="${next.nid}"] button:text("Cancel")`).click();
    await expect.poll(() => page.locator('#notice').textContent()).toBe(`Cancel ${next.nid}: done (task ${next.nid} cancelled)`);
    let asked = '';
    page.once('dialog', (dialog) => {
      asked = dialog.message();
      void dialog.dismiss();
    });
    await card.locator('button:text("Stop")').click();
    expect(asked).toContain(`Stop task ${hung.nid}?`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await taskState(hung.nid)).toBe('running');
    page.once('dialog', (dialog) => void dialog.accept());
    await card.locator('button:text("Stop")').click();
    await expect.poll(() => page.locator('#notice').textContent()).toContain(`Stop ${hung.nid}: done`);
    await card.waitFor({ state: 'detached', timeout: 15_000 });
    expect(await taskState(hung.nid)).toBe('cancelled');
    await expect.poll(() => page.locator(`#history tbody tr[data-nid="${hung.nid}"] td`).last().textContent()).toContain('stopped by an operator');
  });

  it('reconciles on request and shows the frontend healthy; a page of another origin on the host cannot act with the cookie', async () => {
    await page.click('#reconcile');
    await expect.poll(() => page.locator('#notice').textContent()).toMatch(/^Reconcile: done \(queued \d+, cancelled \d+, orphans \d+\)$/);
    await expect.poll(() => page.locator('#health').textContent()).toContain('Reconcileok');
    // Same site (127.0.0.1), another origin: the browser sends the SameSite cookie, the service checks Origin.
    const other = await context.newPage();
    await other.goto(evilUrl);
    const opaque = await other.evaluate(async (target) => {
      await fetch(target, { method: 'POST', mode: 'no-cors', credentials: 'include' });
      return true;
    }, `${service.url}/v1/queue/pause`);
    expect(opaque).toBe(true);
    const [posted] = await Promise.all([other.waitForNavigation(), other.evaluate(() => (document.getElementById('f') as HTMLFormElement).submit())]);
    expect(posted?.status()).toBe(403);
    expect(await other.textContent('body')).toContain('TASKD_ERR_CROSS_SITE_REQUEST');
    await other.close();
    expect((await api('GET', '/v1/queue')).paused).toBe(false);
  });

  it('draws the last hour and is usable with the keyboard and on a phone', async () => {
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.reload();
    await page.waitForSelector('#conn.ok');
    await page.waitForSelector('#charts svg[aria-label^="Queue depth"]');
    await expect.poll(() => page.locator('#charts svg[aria-label^="Median"] text').allTextContents()).toEqual(expect.arrayContaining(['verify', 'backup']));
    // Keyboard: Tab reaches the queue's buttons, and Enter on one acts.
    const reached: string[] = [];
    for (let i = 0; i < 8 && !reached.includes('pause'); i += 1) {
      await page.keyboard.press('Tab');
      reached.push(await page.evaluate(() => document.activeElement?.id ?? ''));
    }
    expect(reached).toContain('pause');
    await page.keyboard.press('Enter');
    await expect.poll(() => page.locator('#notice').textContent()).toBe('Pause: done (paused)');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter');
    await expect.poll(() => page.locator('#notice').textContent()).toBe('Resume: done (resumed)');
    await page.setViewportSize({ width: 390, height: 844 });
    const widths = await page.evaluate(() => ({ page: document.documentElement.scrollWidth, view: window.innerWidth }));
    expect(widths.page).toBeLessThanOrEqual(widths.view);
    await shot('phone');
    await page.setViewportSize({ width: 1000, height: 900 });
  });

  it('renders the API reference with Swagger UI from the service, and its "try it out" carries the token', async () => {
    const requests: string[] = [];
    page.on('request', (request) => requests.push(request.url()));
    await page.goto(`${service.url}/docs`);
    await page.locator('.swagger-ui .info').waitFor();
    // The document's Markdown is rendered: the error table is a table, not lines of pipes.
    expect(await page.locator('.swagger-ui .info table td code', { hasText: 'TASKD_ERR_CROSS_SITE_REQUEST' }).count()).toBe(1);
    expect(await page.locator('.swagger-ui .info').textContent()).not.toContain('| --- |');
    expect(requests.every((u) => u.startsWith(service.url) || u.startsWith('data:'))).toBe(true);
    const pause = page.locator('#operations-queue-pauseQueue');
    await pause.locator('.opblock-summary').click();
    expect(await pause.locator('.responses-table').first().textContent()).not.toContain('Default Response');
    // Without authorising, the call carries the session cookie at most, and no CSRF token: a change is refused.
    const status = pause.locator('.live-responses-table tbody .response-col_status').first();
    await pause.locator('button.execute').click();
    await expect.poll(() => status.textContent()).toMatch(/^40[13]/);
    expect((await api('GET', '/v1/queue')).paused).toBe(false);
    await page.locator('.swagger-ui .auth-wrapper .authorize').click();
    const bearer = page.locator('.modal-ux .auth-container', { hasText: 'bearerToken' });
    await bearer.locator('input').fill(ADMIN_TOKEN);
    await bearer.locator('button.authorize').click();
    await page.locator('.modal-ux button.close-modal').click();
    await pause.locator('button.execute').click();
    await expect.poll(() => status.textContent()).toMatch(/^200/);
    expect(await pause.locator('.live-responses-table .microlight').first().textContent()).toContain('"paused": true');
    expect((await api('GET', '/v1/queue')).paused).toBe(true);
    await api('POST', '/v1/queue/resume');
    await shot('docs');
    page.removeAllListeners('request');
  });
});
