/**
 * The Dockerfiles and the Compose file. No Docker engine runs on these machines, so: the files are
 * read as Docker would (stages, base images, user, health check, entry point), and the build
 * stage's steps are run here in a copy of the build context (node_modules linked in place of its
 * `npm ci`), then the final stage's entry point and health check are run from the tree it copies.
 */
import { execSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, tempDir } from '../support/processes.js';

interface Stage { from: string; name?: string; lines: string[] }

/** Instructions by stage, continuation lines joined. */
function stages(file: string): Stage[] {
  const text = readFileSync(join(ROOT, file), 'utf8').replace(/\\\n/g, ' ');
  const out: Stage[] = [];
  for (const line of text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))) {
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(line);
    if (from) out.push({ from: from[1]!, name: from[2], lines: [] });
    else out.at(-1)!.lines.push(line);
  }
  return out;
}

const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter(Boolean);

for (const kind of ['server', 'client'] as const) {
  describe(`Dockerfile.${kind}`, () => {
    const [build, final] = stages(`Dockerfile.${kind}`);

    it('builds from source in a stage of its own, on a supported Node LTS, and runs as a user with a health check', () => {
      expect(build!.name).toBe('build');
      for (const s of [build!, final!]) expect(s.from).toMatch(/^node:(22|24)-/); // Node 20 reached end of life in April 2026
      expect(final!.lines.some((l) => /^COPY --from=build /.test(l))).toBe(true);
      const user = final!.lines.filter((l) => l.startsWith('USER ')).at(-1);
      expect(user).toBeDefined();
      expect(user).not.toMatch(/^USER (root|0)\b/);
      expect(final!.lines.some((l) => /^HEALTHCHECK .*CMD /.test(l))).toBe(true);
      // Nothing built beforehand is needed: every file the build copies is in a clean clone.
      for (const l of build!.lines.filter((x) => /^COPY (?!--from)/.test(x))) {
        for (const src of l.split(/\s+/).slice(1, -1)) {
          expect(existsSync(join(ROOT, src)), src).toBe(true);
          expect(ignored, src).not.toContain(src);
        }
      }
    });

    it('its build steps produce the tree its entry point and health check run from', () => {
      const ctx = tempDir(`nxt-docker-${kind}-`);
      const fsRoot = join(ctx, 'fs'); // stands for the image's / (absolute paths in RUN lines)
      mkdirSync(join(fsRoot, 'opt'), { recursive: true }); // as in the base image
      const inRoot = (p: string): string => p.replace(/(^|\s)\/(out|opt)\b/g, `$1${fsRoot}/$2`);
      const workdir = join(ctx, 'src');
      mkdirSync(workdir);
      for (const l of build!.lines) {
        const copy = /^COPY (?!--from)(.+)\s+(\S+)$/.exec(l);
        if (copy) {
          for (const src of copy[1]!.split(/\s+/)) cpSync(join(ROOT, src), join(workdir, src), { recursive: true });
          continue;
        }
        const run = /^RUN (.+)$/.exec(l);
        if (!run) continue;
        if (/^npm ci\b/.test(run[1]!)) { symlinkSync(join(ROOT, 'node_modules'), join(workdir, 'node_modules')); continue; }
        mkdirSync(join(fsRoot, 'out'), { recursive: true });
        execSync(inRoot(run[1]!), { cwd: workdir, stdio: 'pipe' });
      }
      const from = /^COPY --from=build (\S+) (\S+)$/.exec(final!.lines.find((l) => l.startsWith('COPY --from=build'))!)!;
      const installed = join(fsRoot, 'installed');
      cpSync(inRoot(from[1]!), installed, { recursive: true });
      const image = (p: string): string => p.replace(from[2]!, installed);
      const entry = JSON.parse(/^ENTRYPOINT\s+(\[.*\])$/.exec(final!.lines.find((l) => l.startsWith('ENTRYPOINT'))!)![1]!) as string[];
      expect(entry[0]).toBe('node');
      const version = spawnSync('node', [image(entry[1]!), '--version'], { encoding: 'utf8' });
      expect(version.status, version.stderr).toBe(0);
      expect(version.stdout).toMatch(new RegExp(`^nxt-${kind} `));
      if (kind === 'client') {
        expect(existsSync(join(installed, 'client/dist/server'))).toBe(false);
        const health = /CMD \["node", "([^"]+)", "health"\]/.exec(final!.lines.find((l) => l.startsWith('HEALTHCHECK'))!)!;
        const r = spawnSync('node', [image(health[1]!), 'health', '--data-dir', join(ctx, 'data')], { encoding: 'utf8' });
        expect(r.status).toBe(1);
        expect(r.stderr).toMatch(/has not heard from its server yet/);
      }
    }, 120_000);
  });
}

describe('docker-compose.yml', () => {
  it('runs a server and two clients that find it by its service name and trust its published keys', () => {
    const text = readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8');
    for (const service of ['server', 'client-a', 'client-b']) expect(text).toMatch(new RegExp(`^ {2}${service}:\\n {4}build: \\{ context: \\., dockerfile: Dockerfile\\.${service === 'server' ? 'server' : 'client'} \\}`, 'm'));
    expect(text.match(/NXT_SERVER: server$/gm)).toHaveLength(2);
    expect(text.match(/- server-public:\/etc\/nxt\/trust:ro$/gm)).toHaveLength(2);
    expect(text).toMatch(/- server-public:\/var\/lib\/nxt-public$/m);
    expect(text).toMatch(/condition: service_healthy/);
  });
});
