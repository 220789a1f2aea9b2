/**
 * The Debian packages as an operator meets them: built by the project's packaging script,
 * installed with dpkg into a throwaway root (maintainer scripts included: they create the
 * services' users there), their units checked by systemd-analyze, the installed trees run (a
 * headless server, a client given its server by `nxt-client setup`, a push by ctl), then removed
 * and purged. No systemd runs here, so the units are verified, not started.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Proc, ROOT, stopAll, tempDir } from '../support/processes.js';
import { ensureCommands } from '../support/debian.js';

const PACKAGE_ENV = { ...process.env, NXT_SKIP_BUILD: '1' };
const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
let work: string;
let root: string;
let tools = false;

beforeAll(() => {
  tools = ensureCommands(['dpkg-deb', 'dpkg', 'systemd-analyze', 'systemd-sysusers'], ['dpkg', 'systemd'], 'the Debian package tests');
  work = tempDir('nxt-deb-');
  for (const kind of ['server', 'client']) {
    execFileSync(join(ROOT, `scripts/Package_${kind === 'server' ? 'Server' : 'Client'}.sh`), ['--out', join(work, 'out'), '--formats', 'deb'], { stdio: 'pipe', env: PACKAGE_ENV });
  }
  // An empty system: a dpkg database and the users a base system has.
  root = join(work, 'root');
  mkdirSync(join(root, 'var/lib/dpkg/info'), { recursive: true });
  mkdirSync(join(root, 'var/lib/dpkg/updates'), { recursive: true });
  mkdirSync(join(root, 'etc'), { recursive: true });
  writeFileSync(join(root, 'var/lib/dpkg/status'), '');
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\n');
  writeFileSync(join(root, 'etc/group'), 'root:x:0:\n');
}, 180_000);

afterAll(async () => { await stopAll(); });

const deb = (kind: string): string => join(work, 'out', `nxt-${kind}_${version}_all.deb`);
const dpkg = (...args: string[]): string => execFileSync('dpkg', [`--root=${root}`, '--force-script-chrootless', '--force-depends', ...args], { encoding: 'utf8', stdio: 'pipe' });

describe('the Debian packages', () => {
  it('declare what they need and hold a service, a config file, and programs on the PATH', () => {
    expect(tools, 'dpkg and the systemd tools').toBe(true);
    const control = execFileSync('dpkg-deb', ['-f', deb('server')], { encoding: 'utf8' });
    expect(control).toMatch(/^Package: nxt-server$/m);
    expect(control).toMatch(/^Depends: nodejs \(>= 20\)/m);
    expect(execFileSync('dpkg-deb', ['--ctrl-tarfile', deb('server')]).length).toBeGreaterThan(0);
    const files = (kind: string): string[] => execFileSync('dpkg-deb', ['-c', deb(kind)], { encoding: 'utf8' }).split('\n').map((l) => l.split(/\s+/).at(-1) ?? '');
    const server = files('server');
    for (const f of ['./usr/bin/nxt-server', './usr/bin/nxt-ctl', './lib/systemd/system/nxt-server.service', './etc/nxt/server.json',
      './usr/lib/sysusers.d/nxt-server.conf', './usr/lib/nxt/server/dist/cli/server.js', './usr/lib/nxt/server/node_modules/tweetnacl/package.json']) {
      expect(server, f).toContain(f);
    }
    const client = files('client');
    for (const f of ['./usr/bin/nxt-client', './lib/systemd/system/nxt-client.service', './etc/nxt/client.json', './usr/lib/nxt/client/dist/cli/client.js']) expect(client, f).toContain(f);
    // A device gets the agent only: no server code, no mail or archive libraries.
    expect(client.filter((f) => /\/dist\/server\/|node_modules\/(tar|nodemailer)\//.test(f))).toEqual([]);
    // Owned by root in the archive, whoever built it.
    expect(execFileSync('dpkg-deb', ['-c', deb('server')], { encoding: 'utf8' })).not.toMatch(/^\S+ (?!root\/root)\S+/m);
  });

  it('install into a throwaway root: users made, units valid and hardened, trees that run and push', async () => {
    expect(tools, 'dpkg and the systemd tools').toBe(true);
    dpkg('-i', deb('server'), deb('client'));
    expect(dpkg('-l')).toMatch(/ii {2}nxt-server +\S+ +all/);
    const passwd = readFileSync(join(root, 'etc/passwd'), 'utf8');
    expect(passwd).toMatch(/^nxt:x:\d+:\d+:.*:\/var\/lib\/nxt-server:\/usr\/sbin\/nologin$/m);
    expect(passwd).toMatch(/^nxt-client:x:\d+:\d+:.*:\/var\/lib\/nxt-client:\/usr\/sbin\/nologin$/m);
    expect(readFileSync(join(root, 'var/lib/dpkg/info/nxt-server.conffiles'), 'utf8')).toBe('/etc/nxt/server.json\n');
    expect(statSync(join(root, 'usr/bin/nxt-ctl')).mode & 0o111).toBe(0o111);
    expect(readFileSync(join(root, 'usr/bin/nxt-ctl'), 'utf8')).toMatch(/NXT_STATE_DIR:-\/var\/lib\/nxt-server[\s\S]*\/usr\/lib\/nxt\/server\/dist\/cli\/server\.js ctl "\$@"/);

    for (const kind of ['server', 'client']) {
      const unitText = readFileSync(join(root, `lib/systemd/system/nxt-${kind}.service`), 'utf8');
      for (const line of [`User=nxt${kind === 'client' ? '-client' : ''}`, `StateDirectory=nxt-${kind}`, 'Restart=on-failure', 'NoNewPrivileges=yes', 'ProtectSystem=strict', '--headless']) {
        expect(unitText, line).toContain(line);
      }
      // systemd checks the unit (its program exists: pointed into the throwaway root for this).
      const unit = join(work, `nxt-${kind}.service`);
      writeFileSync(unit, unitText.replace(`/usr/bin/nxt-${kind}`, join(root, `usr/bin/nxt-${kind}`)));
      const verify = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
      expect(verify.status, verify.stderr).toBe(0);
      const security = spawnSync('systemd-analyze', ['security', '--offline=yes', unit], { encoding: 'utf8' });
      const exposure = Number(/Overall exposure level for .*: ([\d.]+)/.exec(security.stdout + security.stderr)?.[1]);
      expect(exposure).toBeLessThan(3);
    }

    // The installed trees, run as the units run them (headless, from /etc/nxt's config), with
    // the state in a scratch dir and a free port instead of the system's.
    const state = join(work, 'server-state');
    const serverJs = join(root, 'usr/lib/nxt/server/dist/cli/server.js');
    const server = new Proc('installed server', 'node', [serverJs, '--config', join(root, 'etc/nxt/server.json'), '--state-dir', state, '--port', '0', '--enroll-token', 'deb-test'], { NXT_ENROLL_TOKEN: '' });
    const port = Number((await server.waitFor(/listening on UDP port (\d+)/))[1]);
    expect(server.output).toMatch(/^\{"level":"info","time":"[^"]+","program":"nxt-server"/); // headless: log records

    const clientJs = join(root, 'usr/lib/nxt/client/dist/cli/client.js');
    const config = join(work, 'etc-nxt/client.json');
    mkdirSync(join(work, 'etc-nxt'));
    writeFileSync(config, readFileSync(join(root, 'etc/nxt/client.json')));
    const setup = spawnSync('node', [clientJs, 'setup', '--server', `localhost:${port}`, '--trust', join(state, 'release.pub'), '--enroll-token', 'deb-test', '--config', config], { encoding: 'utf8' });
    expect(setup.status, setup.stderr).toBe(0);
    expect(setup.stdout).toMatch(/modules must be signed by release key SHA256:/);
    expect(JSON.parse(readFileSync(config, 'utf8'))).toMatchObject({ server: 'localhost', port, trust: join(work, 'etc-nxt/trust/release.pub'), headless: true });
    expect(existsSync(join(work, 'etc-nxt/trust/identity.pub'))).toBe(true);
    const client = new Proc('installed client', 'node', [clientJs, '--config', config, '--data-dir', join(work, 'client-data')], { NXT_ENROLL_TOKEN: '' });
    await server.waitFor(/client [0-9a-f]{12} registered from 127\.0\.0\.1/);
    writeFileSync(join(work, 'v2_2_0.mjs'), readFileSync(join(ROOT, 'plugins/libfunctional_2_0.mjs')));
    const ctl = spawnSync('node', [serverJs, 'ctl', '--state-dir', state, 'push', 'v2_2_0.mjs'], { encoding: 'utf8', cwd: work });
    expect(ctl.status, ctl.stderr).toBe(0);
    expect(ctl.stdout).toMatch(/push finished: 1 done, 0 failed/);
    await client.waitFor(/Major = 8\\nMinor = 6/);
    // The health check the client image uses: the server answered lately.
    const health = spawnSync('node', [clientJs, 'health', '--data-dir', join(work, 'client-data')], { encoding: 'utf8' });
    expect(health.status, health.stderr).toBe(0);
    await client.stop();
    await server.stop();

    // Remove keeps state and config; purge takes both.
    mkdirSync(join(root, 'var/lib/nxt-server'), { recursive: true });
    writeFileSync(join(root, 'var/lib/nxt-server/release.key'), 'kept until purge\n');
    dpkg('-r', 'nxt-server');
    expect(existsSync(join(root, 'usr/bin/nxt-server'))).toBe(false);
    expect(existsSync(join(root, 'var/lib/nxt-server/release.key'))).toBe(true);
    expect(existsSync(join(root, 'etc/nxt/server.json'))).toBe(true);
    dpkg('--purge', 'nxt-server', 'nxt-client');
    expect(existsSync(join(root, 'var/lib/nxt-server'))).toBe(false);
    expect(existsSync(join(root, 'etc/nxt'))).toBe(false);
    expect(dpkg('-l')).not.toMatch(/nxt-/);
  }, 120_000);
});
