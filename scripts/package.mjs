#!/usr/bin/env node
// Build an installer: node scripts/package.mjs server|client [--out DIR] [--trust FILE]
//   nxt_server.tgz → nxt/server/{bin/UpdateServer.sh, dist/, node_modules/, package.json}
//   nxt_client.tgz → nxt/client/{bin/UpdateClient.sh, dist/, node_modules/, package.json, etc/server.pub, etc/identity.pub}
// The trees run on a machine that has only Node.js: compiled code and production dependencies
// are inside. The client's trust anchors are the server's public release and identity keys.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tar from 'tar';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const [kind, ...rest] = process.argv.slice(2);
const args = { out: root, trust: join(root, 'state/server/release.pub') };
for (let i = 0; i < rest.length; i += 2) {
  const name = rest[i]?.replace(/^--/, '');
  if (!(name in args) || rest[i + 1] === undefined) fail(`unknown or incomplete option ${rest[i]}`);
  args[name] = resolve(rest[i + 1]);
}
if (kind !== 'server' && kind !== 'client') fail('usage: package.mjs server|client [--out DIR] [--trust FILE]');
if (!existsSync(join(root, 'dist/cli/server.js'))) fail('dist/ is missing: run npm run build first');

const stage = mkdtempSync(join(tmpdir(), 'nxt-package-'));
try {
  const tree = join(stage, 'nxt', kind);
  mkdirSync(join(tree, 'bin'), { recursive: true });
  const script = kind === 'server' ? 'UpdateServer.sh' : 'UpdateClient.sh';
  cpSync(join(root, 'scripts', script), join(tree, 'bin', script));
  chmodSync(join(tree, 'bin', script), 0o755);
  cpSync(join(root, 'dist'), join(tree, 'dist'), { recursive: true, filter: (p) => !p.endsWith('.map') });
  if (kind === 'server') cpSync(join(root, 'plugins'), join(tree, 'plugins'), { recursive: true });

  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  writeFileSync(join(tree, 'package.json'), `${JSON.stringify({
    name: `nxt-${kind}`, version: pkg.version, type: 'module', private: true,
    engines: pkg.engines, dependencies: pkg.dependencies,
  }, null, 2)}\n`);
  // Production dependencies, copied from this checkout's node_modules: no network needed.
  const listed = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: root, encoding: 'utf8' });
  for (const dir of listed.split('\n').map((l) => l.trim()).filter((l) => l && l !== root)) {
    cpSync(dir, join(tree, relative(root, dir)), { recursive: true });
  }

  if (kind === 'client') {
    if (!existsSync(args.trust)) {
      // No server key yet: create it where a server started from this checkout will find it.
      execFileSync('node', [join(root, 'dist/cli/server.js'), 'keygen', '--state-dir', dirname(args.trust)], { stdio: 'inherit' });
    }
    // The server's identity key (sessions), beside the release key: the client looks for it there.
    const identity = join(dirname(args.trust), 'identity.pub');
    if (!existsSync(identity)) {
      execFileSync('node', [join(root, 'dist/cli/server.js'), 'keygen', '--state-dir', dirname(args.trust)], { stdio: 'inherit' });
    }
    mkdirSync(join(tree, 'etc'));
    cpSync(args.trust, join(tree, 'etc/server.pub'));
    cpSync(identity, join(tree, 'etc/identity.pub'));
    console.log(`trust anchors: ${args.trust} (modules), ${identity} (sessions)`);
  }

  mkdirSync(args.out, { recursive: true });
  const file = join(args.out, `nxt_${kind}.tgz`);
  rmSync(file, { force: true });
  await tar.create({ gzip: true, file, cwd: stage, portable: true }, ['nxt']);
  console.log(`wrote ${file}`);
} finally {
  rmSync(stage, { recursive: true, force: true });
}

function fail(message) {
  console.error(`package: ${message}`);
  process.exit(2);
}
