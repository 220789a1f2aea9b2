/**
 * The HTTP API with a real server and a real device: tokens made and revoked at the console, the
 * fleet and the enrollment requests read, a device approved, a module uploaded and pushed, bad
 * requests answered as such, and nothing without a valid token.
 */
import { readdirSync, readFileSync, rmSync, symlinkSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT, runningCount, startClient, startServer, stopAll, tempDir } from '../support/processes.js';

afterEach(async () => {
  await stopAll();
  expect(runningCount()).toBe(0);
});

describe('the HTTP API', () => {
  it('reads the fleet, approves, uploads and pushes with a token, and refuses without one', async () => {
    const dir = tempDir('nxt-api-');
    const { proc: server, port } = await startServer(join(dir, 'server'), ['--http', '127.0.0.1:0', '--http-max-upload', '1'], { NXT_ENROLL_TOKEN: '' });
    const base = `${(await server.waitFor(/HTTP API on (http:\/\/127\.0\.0\.1:\d+\/api\/v1)/))[1]}`;
    const token = (await server.run('token create ci', /token ci: (nxt_\S+)\n/)).match(/token ci: (nxt_\S+)/)![1]!;
    const api = (path: string, init: RequestInit & { token?: string | null } = {}): Promise<Response> => fetch(`${base}${path}`, {
      ...init, headers: { ...(init.token === null ? {} : { authorization: `Bearer ${init.token ?? token}` }), ...(init.body && typeof init.body === 'string' ? { 'content-type': 'application/json' } : {}) },
    });

    expect(await (await api('/health', { token: null })).json()).toMatchObject({ ok: true });
    expect((await api('/devices', { token: null })).status).toBe(401);
    expect((await api('/devices', { token: 'nxt_forged' })).status).toBe(401);
    const spec = await (await api('/openapi.json', { token: null })).json() as { openapi: string; paths: Record<string, unknown> };
    expect(spec.openapi).toBe('3.1.0');
    expect(Object.keys(spec.paths)).toEqual(expect.arrayContaining(['/api/v1/devices', '/api/v1/commands', '/api/v1/devices/{id}/approve']));

    // A device asks to join; approved through the API.
    const device = await startClient('d', port, join(dir, 'd'), join(dir, 'server/release.pub'), '127.0.0.1', [], { env: { NXT_ENROLL_TOKEN: '' }, until: /waiting for the operator/ });
    const requests = await (await api('/requests')).json() as { id: string; state: string }[];
    expect(requests).toEqual([expect.objectContaining({ state: 'pending' })]);
    const approved = await api(`/devices/${requests[0]!.id.slice(0, 8)}/approve`, { method: 'POST' });
    expect(approved.status).toBe(200);
    expect(await approved.json()).toMatchObject({ ok: true, status: 0, output: [expect.stringMatching(/approved/)] });
    await device.waitFor('registered with the server');
    expect(await (await api('/devices')).json()).toEqual([expect.objectContaining({ id: requests[0]!.id, online: true })]);

    // A module uploaded, then pushed; the push's outcome per device comes back as data.
    const uploaded = await api('/releases?name=libfunctional_2_0.mjs', { method: 'POST', body: readFileSync(join(ROOT, 'plugins/libfunctional_2_0.mjs')) });
    expect(uploaded.status).toBe(201);
    const { push } = await uploaded.json() as { push: string[] };
    const pushed = await api('/commands', { method: 'POST', body: JSON.stringify({ words: push }) });
    expect(pushed.status).toBe(200);
    expect(await pushed.json()).toMatchObject({ ok: true, data: [expect.objectContaining({ done: 1, failed: 0 })] });
    await device.waitFor('Major = 8');
    expect(await (await api('/history')).json()).toEqual([expect.objectContaining({ module: 'libfunctional_2_0.mjs', result: 'ok' })]);
    // The same push as a typed command: its input as JSON, its outcome as the output.
    const again = await api('/commands/push', { method: 'POST', body: JSON.stringify({ file: push[1], to: requests[0]!.id.slice(0, 8) }) });
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ ok: true, command: 'push', output: { done: 0, failed: 0, already: 1, devices: [expect.objectContaining({ id: requests[0]!.id, already: true })] } });
    expect((await api('/commands/push', { method: 'POST', body: JSON.stringify({ file: push[1], version: 'two' }) })).status).toBe(400);

    // Asked wrongly: 400 with the reason; a command that fails: 422.
    const bogus = await api('/commands', { method: 'POST', body: JSON.stringify({ words: ['frobnicate'] }) });
    expect(bogus.status).toBe(400);
    expect(await bogus.json()).toMatchObject({ ok: false, status: 2, errors: [expect.stringMatching(/unknown command "frobnicate"/)] });
    expect((await api('/commands', { method: 'POST', body: 'not json' })).status).toBe(400);
    expect((await api('/commands', { method: 'POST', body: JSON.stringify({ words: ['push', join(dir, 'missing.mjs')] }) })).status).toBe(400);
    // The API sends only files uploaded to it: a token is not a way to have the server send its
    // keys (or anything else it can read) to a device, by any path, link or command.
    const key = join(dir, 'server/release.key');
    const notUploaded = await api('/commands/push', { method: 'POST', body: JSON.stringify({ file: key }) });
    expect(notUploaded.status).toBe(400);
    expect(await notUploaded.json()).toMatchObject({ code: 'usage', error: expect.stringMatching(/is not a file uploaded through the API/) });
    const uploads = join(dir, 'server/api-uploads', readdirSync(join(dir, 'server/api-uploads'))[0]!);
    symlinkSync(key, join(uploads, 'key_9_9.mjs'));
    expect((await api('/commands/push', { method: 'POST', body: JSON.stringify({ file: join(uploads, 'key_9_9.mjs') }) })).status).toBe(400);
    expect((await api('/commands', { method: 'POST', body: JSON.stringify({ words: ['job', 'put', 'all', key, 'stolen.key'] }) })).status).toBe(400);
    expect((await api('/commands', { method: 'POST', body: JSON.stringify({ words: ['rollout', 'start', `${uploads}/../../release.key`] }) })).status).toBe(400);
    rmSync(join(uploads, 'key_9_9.mjs'));
    expect((await api('/releases?name=../../etc/x', { method: 'POST', body: 'x' })).status).toBe(400);
    // Larger than --http-max-upload (1 MiB): refused, and nothing of it kept.
    expect((await api('/releases?name=big_9_0.mjs', { method: 'POST', body: Buffer.alloc(2 * 1024 * 1024, 32) })).status).toBe(413);
    expect(readdirSync(join(dir, 'server/api-uploads')).flatMap((d) => readdirSync(join(dir, 'server/api-uploads', d)))).toEqual(['libfunctional_2_0.mjs']);
    expect((await api('/nothing')).status).toBe(404);

    // Typed commands: input as JSON, checked against the command's schema; output as it is.
    expect(Object.keys(spec.paths)).toEqual(expect.arrayContaining(['/api/v1/commands/tag', '/api/v1/commands/clients', '/api/v1/commands/history']));
    const id = requests[0]!.id;
    const tagged = await api('/commands/tag', { method: 'POST', body: JSON.stringify({ device: id.slice(0, 8), group: 'kiosks' }) });
    expect(tagged.status).toBe(200);
    expect(await tagged.json()).toEqual({ ok: true, command: 'tag', output: { device: id, group: 'kiosks', changed: true, tags: ['kiosks'] } });
    expect(await (await api('/commands/clients', { method: 'POST', body: '{}' })).json()).toMatchObject({ ok: true, output: [expect.objectContaining({ id, tags: ['kiosks'] })] });
    // Query string input for the GET resources: ?last=1, ?device=…; a bad one is 400, not a crash.
    expect(await (await api(`/history?device=${id.slice(0, 8)}&last=1`)).json()).toEqual([expect.objectContaining({ client: id, result: 'already installed' })]);
    expect((await api('/history?last=0')).status).toBe(400);
    const unknownField = await api('/commands/tag', { method: 'POST', body: JSON.stringify({ device: id, group: 'kiosks', colour: 'red' }) });
    expect(unknownField.status).toBe(400);
    expect(await unknownField.json()).toMatchObject({ ok: false, code: 'usage', error: expect.stringMatching(/unknown field "colour"/) });
    expect((await api('/commands/tag', { method: 'POST', body: JSON.stringify({ device: id }) })).status).toBe(400);
    const noSuchDevice = await api('/commands/report', { method: 'POST', body: JSON.stringify({ device: 'ffffffff' }) });
    expect(noSuchDevice.status).toBe(422);
    expect(await noSuchDevice.json()).toMatchObject({ ok: false, code: 'no-such-client' });
    // The console prints the same command's output as text.
    expect(await server.run('clients', /NxtServer# /)).toMatch(new RegExp(`${id.slice(0, 8)}.*online.*kiosks`));

    // Every command is typed: jobs, campaigns, tokens and counters too.
    const post = async (name: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
      const r = await api(`/commands/${name}`, { method: 'POST', body: JSON.stringify(body) });
      return { status: r.status, json: await r.json() as Record<string, unknown> };
    };
    const queued = await post('job', { kind: 'logs', target: 'kiosks', since: '2026-11-23T10:00:00Z', severity: 'error' });
    expect(queued).toEqual({ status: 200, json: { ok: true, command: 'job', output: { jobs: [{ id: expect.any(Number), device: id, kind: 'logs' }] } } });
    expect(await (await api('/jobs')).json()).toEqual([expect.objectContaining({ device: id, kind: 'logs', params: expect.objectContaining({ severity: 'error' }) })]);
    expect(await post('job', { kind: 'put', target: id, name: 'x.bin' })).toMatchObject({ status: 400, json: { code: 'usage', error: expect.stringMatching(/needs the local file/) } });
    expect(await post('job', { kind: 'logs', target: id, severity: 'loud' })).toMatchObject({ status: 400, json: { error: expect.stringMatching(/unknown severity "loud"/) } });
    expect((await post('job', { kind: 'format', target: id })).status).toBe(400);
    const started = await post('rollout', { action: 'start', release: 'libfunctional_2_0.mjs', to: 'kiosks', stages: '100%' });
    expect(started).toMatchObject({ status: 200, json: { output: { action: 'start', campaigns: [{ id: 1, members: [id], spec: expect.objectContaining({ stages: [{ percent: 100 }] }), counts: expect.any(Object) }] } } });
    expect(await (await api('/rollouts?id=1')).json()).toEqual([expect.objectContaining({ id: 1, spec: expect.objectContaining({ target: 'kiosks' }) })]);
    expect(await post('rollout', { action: 'start' })).toMatchObject({ status: 400, json: { error: expect.stringMatching(/needs the release/) } });
    expect(await post('rollout', { action: 'pause', id: '7' })).toMatchObject({ status: 422 });
    expect((await post('token', { action: 'list' })).json).toMatchObject({ output: { tokens: [expect.objectContaining({ name: 'ci' })] } });
    const counters = (await post('stats', {})).json.output as { messages: { registrations: number }; channel: { handshakes: number; sessions: number } };
    expect(counters.messages.registrations).toBeGreaterThan(0);
    expect(counters.channel.handshakes).toBeGreaterThan(0);
    expect(await server.run('stats', /channel: .*\n/)).toMatch(/channel: 1 sessions, \d+ handshakes/);

    // Revoked: refused from then on.
    await server.run('token revoke ci', /token ci revoked\n/);
    expect((await api('/devices')).status).toBe(401);
    expect(await server.run('token list', /no API tokens.*\n|NAME +CREATED\n/)).toMatch(/no API tokens/);
  });

  it('keeps an upload a day: older ones go when the server looks (at start, then hourly)', async () => {
    const dir = tempDir('nxt-api-');
    const state = join(dir, 'server');
    const start = async (): Promise<{ api: (name: string) => Promise<Response> }> => {
      const { proc } = await startServer(state, ['--http', '127.0.0.1:0'], { NXT_ENROLL_TOKEN: '' });
      const base = (await proc.waitFor(/HTTP API on (http:\/\/127\.0\.0\.1:\d+\/api\/v1)/))[1]!;
      const token = (await proc.run('token create ci', /token ci: (nxt_\S+)\n|error.*\n/)).match(/token ci: (nxt_\S+)/)?.[1];
      return { api: (name) => fetch(`${base}/releases?name=${name}`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: 'export default () => ({ major: 2, minor: 1, productName: "x" });\n' }) };
    };
    const first = await start();
    expect((await first.api('old_2_1.mjs')).status).toBe(201);
    expect((await first.api('new_2_1.mjs')).status).toBe(201);
    const uploads = join(state, 'api-uploads');
    const holding = (name: string): string => readdirSync(uploads).find((d) => readdirSync(join(uploads, d)).includes(name))!;
    const old = holding('old_2_1.mjs');
    const dayAgo = new Date(Date.now() - 25 * 3600_000);
    utimesSync(join(uploads, old), dayAgo, dayAgo);
    await stopAll();
    await start();
    expect(readdirSync(uploads)).toEqual([holding('new_2_1.mjs')]);
  });
});
