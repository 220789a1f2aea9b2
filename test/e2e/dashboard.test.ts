/**
 * The dashboard in a real browser: Debian's Chromium driven by Playwright (playwright-core; no
 * browser download), against a real server with real clients. Sign in with a token, see the
 * clients, approve a pending one, push a module and see it reach 100% and the version change,
 * start a campaign and pause and resume it. Screenshots of the main pages go to test-artifacts/.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, startClient, startServer, stopAll, tempDir } from '../support/processes.js';
import { writeModule } from '../support/modules.js';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
if (!CHROMIUM && process.env.CI) throw new Error('Chromium is not installed (apt-get install chromium): .ci/run should have installed it');
const ARTIFACTS = join(ROOT, 'test-artifacts');

let browser: Browser | undefined;
beforeAll(async () => {
  if (!CHROMIUM) return;
  mkdirSync(ARTIFACTS, { recursive: true });
  // The flags keep Chromium off the network it would otherwise try (updates, sync, lookups).
  browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
});
afterAll(async () => { await browser?.close(); });
afterEach(async () => { await stopAll(); });

const shot = (page: Page, name: string): Promise<Buffer> => page.screenshot({ path: join(ARTIFACTS, `dashboard-${name}.png`), fullPage: true });

describe.skipIf(!CHROMIUM)('the dashboard, in Chromium', () => {
  it('signs in with a token, approves a device, pushes to 100% with the version changing live, pauses and resumes a campaign, and removes a release', async () => {
    const dir = tempDir('nxt-dash-');
    const { proc: server, port } = await startServer(join(dir, 'server'), ['--http', '127.0.0.1:0', '--renew', '1000']);
    const base = (await server.waitFor(/dashboard on (http:\/\/127\.0\.0\.1:\d+)\//))[1]!;
    const token = (await server.run('token create ui', /token ui: (nxt_\S+)\n/)).match(/token ui: (nxt_\S+)/)![1]!;
    const probation = ['--probation', '60'];
    const a = await startClient('a', port, join(dir, 'a'), join(dir, 'server/release.pub'), '127.0.0.1', probation);
    const b = await startClient('b', port, join(dir, 'b'), join(dir, 'server/release.pub'), '127.0.0.1', probation, { env: { NXT_ENROLL_TOKEN: '' }, until: /waiting for the operator/ });
    const idA = a.output.match(/nxt client ([0-9a-f]{32})/)![1]!;
    const idB = b.output.match(/nxt client ([0-9a-f]{32})/)![1]!;

    const page = await browser!.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${base}/`);
    // A wrong token is refused, a right one lets in.
    await page.getByLabel('API token').fill('nxt_wrong');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toMatch(/not valid/);
    await page.getByLabel('API token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator(`tr[data-device="${idA}"]`).waitFor();
    await page.getByText('live', { exact: true }).waitFor();
    expect(await page.locator(`tr[data-device="${idB}"]`).count()).toBe(0); // pending: not in the fleet
    await shot(page, 'fleet');

    // Enrollment: the pending device, approved from the page; it joins the fleet live.
    await page.getByRole('link', { name: 'Enrollment' }).click();
    await page.locator(`tr[data-request="${idB}"]`).waitFor();
    await shot(page, 'enrollment');
    await page.getByRole('button', { name: `Approve ${idB.slice(0, 12)}` }).click();
    await b.waitFor('registered with the server');
    await page.getByRole('link', { name: 'Fleet' }).click();
    await page.locator(`tr[data-device="${idB}"]`).waitFor();

    // A push from the page: both devices reach 100%, and the fleet shows the new version.
    await page.getByRole('link', { name: 'Releases' }).click();
    await page.getByLabel('Module file').setInputFiles(writeModule(dir, 'dash_7_1.mjs', 4 * 1024 * 1024, 7, 1));
    await page.getByRole('button', { name: 'Sign and push' }).click();
    for (const id of [idA, idB]) await page.locator(`li[data-result="${id}"]`, { hasText: 'done, 100%, now 7.1.0' }).waitFor({ timeout: 30_000 });
    await expect.poll(() => page.getByRole('status').filter({ hasText: 'push finished' }).textContent(), { timeout: 30_000 }).toMatch(/push finished: 2 done, 0 failed/);
    await a.waitFor('Major = 7');
    // The release is listed with its size, its signer and where it is installed.
    await page.locator('tr[data-release="7.1.0"]', { hasText: '4.0 MiB' }).filter({ hasText: 'by the server' }).waitFor();
    await shot(page, 'releases');
    await page.getByRole('link', { name: 'Fleet' }).click();
    for (const id of [idA, idB]) await page.locator(`tr[data-device="${id}"] td.release`, { hasText: '7.1.0' }).waitFor();

    // A campaign from the page (devices stay on probation: it stays running), paused and resumed.
    await page.getByRole('link', { name: 'Rollouts' }).click();
    await page.getByLabel('or a new module').setInputFiles(writeModule(dir, 'dash_7_2.mjs', 2000, 7, 2));
    await page.getByLabel('Stages').fill('1,100%');
    await page.getByRole('button', { name: 'Start' }).click();
    const campaign = page.locator('article[data-campaign="1"]');
    await campaign.getByText('running', { exact: true }).waitFor();
    await campaign.getByRole('button', { name: 'Pause' }).click();
    await campaign.getByText('paused', { exact: true }).waitFor();
    expect(await server.run('rollout status 1', /rollout 1: .*\n/)).toMatch(/: paused/);
    await campaign.getByRole('button', { name: 'Resume' }).click();
    await campaign.getByText('running', { exact: true }).waitFor();
    await shot(page, 'rollouts');

    // Releases: the one a running campaign rolls out is not removed; the other is (two clicks).
    await page.getByRole('link', { name: 'Releases' }).click();
    await page.getByRole('button', { name: 'Remove dash_7_2.mjs 7.2.0' }).click();
    await page.getByRole('button', { name: 'Confirm: remove dash_7_2.mjs 7.2.0' }).click();
    await expect.poll(() => page.getByRole('status').filter({ hasText: 'rolls out' }).textContent()).toMatch(/rollout 1 \(running\) rolls out dash_7_2\.mjs 7\.2\.0: cancel it first/);
    await page.getByRole('button', { name: 'Remove dash_7_1.mjs 7.1.0' }).click();
    await page.getByRole('button', { name: 'Confirm: remove dash_7_1.mjs 7.1.0' }).click();
    await expect.poll(() => page.getByRole('status').filter({ hasText: 'removed' }).textContent()).toMatch(/removed dash_7_1\.mjs 7\.1\.0/);
    await page.locator('tr[data-release="7.1.0"]', { hasText: 'removed' }).waitFor();
    expect(await server.run('rollout start 7.1.0', /error.*\n/)).toMatch(/no stored release "7\.1\.0"/);

    // A phone-sized screen: the same page, nothing cut off sideways but the tables' own scroll.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.getByRole('link', { name: 'Fleet' }).click();
    await page.locator(`tr[data-device="${idA}"]`).waitFor();
    expect(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1)).toBe(true);
    await shot(page, 'phone');
    expect(errors).toEqual([]);
  }, 120_000);
});
