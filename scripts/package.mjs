#!/usr/bin/env node
// Build the installers: node scripts/package.mjs server|client [--out DIR] [--trust FILE] [--formats tgz,deb]
//
//   nxt_server.tgz            → nxt/server/{bin/UpdateServer.sh, dist/, node_modules/, plugins/, package.json}
//   nxt_client.tgz            → nxt/client/{bin/UpdateClient.sh, dist/ (the client's files only), node_modules/, package.json}
//   nxt-server_<v>_all.deb    → /usr/lib/nxt/server, /usr/bin/nxt-server, /usr/bin/nxt-ctl, nxt-server.service,
//                               /etc/nxt/server.json, state in /var/lib/nxt-server (keys made at first start)
//   nxt-client_<v>_all.deb    → /usr/lib/nxt/client, /usr/bin/nxt-client, nxt-client.service, /etc/nxt/client.json;
//                               `nxt-client setup --server HOST:PORT --trust release.pub` gives it its server
//
// The trees run on a machine that has only Node.js (≥ 20): compiled code and production
// dependencies are inside. A client carries no server keys unless --trust names them: keys that
// come from this checkout would not be those of a server installed elsewhere (a client that trusts
// the wrong server is told so by the server, but better not to build one).
import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tar from 'tar';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const [kind, ...rest] = process.argv.slice(2);
const args = { out: root, trust: undefined, formats: 'tgz,deb' };
for (let i = 0; i < rest.length; i += 2) {
  const name = rest[i]?.replace(/^--/, '');
  if (!(name in args) || rest[i + 1] === undefined) fail(`unknown or incomplete option ${rest[i]}`);
  args[name] = name === 'formats' ? rest[i + 1] : resolve(rest[i + 1]);
}
if (kind !== 'server' && kind !== 'client') fail('usage: package.mjs server|client [--out DIR] [--trust FILE] [--formats tgz,deb]');
if (!existsSync(join(root, 'dist/cli/server.js'))) fail('dist/ is missing: run npm run build first');
const formats = new Set(args.formats.split(','));
for (const f of formats) if (f !== 'tgz' && f !== 'deb') fail(`unknown format ${f} (tgz, deb)`);

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
/** What each program needs of the production dependencies: the server all of them (and the
 *  optional ones installed here: better-sqlite3, its SQLite on Node 20); the client those its own
 *  files import (no tar, no mail, no database). */
const clientFiles = reachable(join(root, 'dist/cli/client.js'));
const versions = { ...pkg.dependencies, ...pkg.optionalDependencies };
const DEPENDENCIES = {
  server: [...Object.keys(pkg.dependencies), ...Object.keys(pkg.optionalDependencies ?? {}).filter((d) => existsSync(join(root, 'node_modules', d)))],
  client: [...new Set(clientFiles.flatMap((f) => bareImports(f)))].sort(),
};
for (const d of DEPENDENCIES.client) if (!(d in pkg.dependencies)) fail(`the client imports ${d}, which is not a dependency in package.json`);

const stage = mkdtempSync(join(tmpdir(), 'nxt-package-'));
try {
  const tree = join(stage, 'tree');
  buildTree(tree);
  mkdirSync(args.out, { recursive: true });
  if (formats.has('tgz')) await writeTgz(tree);
  if (formats.has('deb')) writeDeb(tree);
} finally {
  rmSync(stage, { recursive: true, force: true });
}

/** The program's tree: launcher script, compiled code, dependencies, package.json. */
function buildTree(tree) {
  mkdirSync(join(tree, 'bin'), { recursive: true });
  const script = kind === 'server' ? 'UpdateServer.sh' : 'UpdateClient.sh';
  cpSync(join(root, 'scripts', script), join(tree, 'bin', script));
  chmodSync(join(tree, 'bin', script), 0o755);
  if (kind === 'server') {
    cpSync(join(root, 'dist'), join(tree, 'dist'), { recursive: true, filter: (p) => !p.endsWith('.map') });
    cpSync(join(root, 'plugins'), join(tree, 'plugins'), { recursive: true });
  } else {
    for (const file of clientFiles) {
      mkdirSync(dirname(join(tree, relative(root, file))), { recursive: true });
      cpSync(file, join(tree, relative(root, file)));
    }
  }
  const deps = Object.fromEntries(DEPENDENCIES[kind].map((d) => [d, versions[d]]));
  writeFileSync(join(tree, 'package.json'), `${JSON.stringify({
    name: `nxt-${kind}`, version: pkg.version, type: 'module', private: true, engines: pkg.engines, dependencies: deps,
  }, null, 2)}\n`);
  // Production dependencies, copied from this checkout's node_modules: no network needed.
  for (const dir of dependencyDirs(DEPENDENCIES[kind])) cpSync(dir, join(tree, relative(root, dir)), { recursive: true });
  if (kind === 'client' && args.trust !== undefined) {
    // Trust anchors baked in on request: the server's release key and, beside it, its identity key.
    const identity = join(dirname(args.trust), 'identity.pub');
    for (const f of [args.trust, identity]) if (!existsSync(f)) fail(`${f} does not exist (a server's release.pub, with its identity.pub beside it)`);
    mkdirSync(join(tree, 'etc'));
    cpSync(args.trust, join(tree, 'etc/server.pub'));
    cpSync(identity, join(tree, 'etc/identity.pub'));
    console.log(`trust anchors: ${args.trust} (modules), ${identity} (sessions)`);
  }
}

/** The compiled files `entry` loads: relative static and dynamic imports, and new URL('./x.js'). */
function reachable(entry) {
  const seen = new Set();
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.pop();
    if (seen.has(file)) continue;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+|new URL\(\s*)['"](\.{1,2}\/[^'"]+\.js)['"]/g)) {
      const target = resolve(dirname(file), m[1]);
      if (existsSync(target)) queue.push(target);
    }
  }
  return [...seen];
}

/** Packages a compiled file imports or requires by name (node: built-ins aside): 'pino', '@scope/x'. */
function bareImports(file) {
  const names = [];
  for (const m of readFileSync(file, 'utf8').matchAll(/(?:from\s+|import\s*\(\s*|import\s+|require\(\s*|createRequire\([^)]*\)\(\s*)['"]([^'".][^'"]*)['"]/g)) {
    if (m[1].startsWith('node:')) continue;
    names.push(m[1].startsWith('@') ? m[1].split('/').slice(0, 2).join('/') : m[1].split('/')[0]);
  }
  return names;
}

/** node_modules folders of `names` and everything they depend on (hoisted or nested). */
function dependencyDirs(names) {
  const found = new Set();
  const visit = (name, from) => {
    for (let d = from; ; d = dirname(d)) {
      const dir = join(d, 'node_modules', name);
      if (existsSync(join(dir, 'package.json'))) {
        if (found.has(dir)) return;
        found.add(dir);
        const p = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
        for (const dep of Object.keys({ ...p.dependencies, ...p.optionalDependencies })) visit(dep, dir);
        return;
      }
      if (d === root || d === dirname(d)) {
        if (names.includes(name)) fail(`dependency ${name} is not installed: run npm ci`);
        return; // an optional dependency not installed here
      }
    }
  };
  for (const n of names) visit(n, root);
  // A nested copy inside a package already copied comes along with it.
  return [...found].filter((dir) => ![...found].some((other) => other !== dir && dir.startsWith(`${other}/`)));
}

async function writeTgz(tree) {
  const top = join(stage, 'tgz');
  cpSync(tree, join(top, 'nxt', kind), { recursive: true });
  const file = join(args.out, `nxt_${kind}.tgz`);
  rmSync(file, { force: true });
  await tar.create({ gzip: true, file, cwd: top, portable: true }, ['nxt']);
  console.log(`wrote ${file}`);
}

/** A Debian package, laid out as Debian expects, built with dpkg-deb (owned by root in the archive). */
function writeDeb(tree) {
  try { execFileSync('dpkg-deb', ['--version'], { stdio: 'ignore' }); } catch {
    fail('dpkg-deb is not installed (apt-get install dpkg), or build the tgz only: --formats tgz');
  }
  const name = `nxt-${kind}`;
  const deb = join(stage, 'deb');
  const lib = join(deb, 'usr/lib/nxt', kind);
  mkdirSync(lib, { recursive: true });
  for (const entry of readdirSync(tree)) if (entry !== 'bin' && entry !== 'etc') cpSync(join(tree, entry), join(lib, entry), { recursive: true });
  const debian = join(root, 'packaging/debian');
  const copy = (from, to, mode) => {
    mkdirSync(dirname(join(deb, to)), { recursive: true });
    cpSync(join(debian, from), join(deb, to));
    chmodSync(join(deb, to), mode);
  };
  copy(`${name}.service`, `lib/systemd/system/${name}.service`, 0o644);
  copy(`${name}.sysusers`, `usr/lib/sysusers.d/${name}.conf`, 0o644);
  copy(`${kind}.json`, `etc/nxt/${kind}.json`, 0o644);
  copy(`${name}.sh`, `usr/bin/${name}`, 0o755);
  if (kind === 'server') copy('nxt-ctl.sh', 'usr/bin/nxt-ctl', 0o755);
  mkdirSync(join(deb, 'DEBIAN'));
  for (const script of ['postinst', 'prerm', 'postrm']) copy(`${name}.${script}`, `DEBIAN/${script}`, 0o755);
  writeFileSync(join(deb, 'DEBIAN/conffiles'), `/etc/nxt/${kind}.json\n`);
  const version = pkg.version;
  const installedKb = Math.ceil(Number(execFileSync('du', ['-sk', deb], { encoding: 'utf8' }).split('\t')[0]));
  writeFileSync(join(deb, 'DEBIAN/control'), [
    `Package: ${name}`,
    `Version: ${version}`,
    'Architecture: all',
    'Maintainer: nxt developers <nxt@localhost>',
    `Installed-Size: ${installedKb}`,
    // Node.js from the system: security fixes come with the system's updates. Debian 13 has
    // nodejs 20; on Debian 12 take NodeSource's nodejs (20, 22 or 24) package.
    'Depends: nodejs (>= 20), adduser | systemd',
    'Section: admin',
    'Priority: optional',
    'Homepage: https://example.invalid/nxt',
    kind === 'server'
      ? 'Description: nxt update server\n Pushes signed plugin modules to enrolled devices over authenticated, encrypted UDP\n sessions, runs maintenance jobs and staged rollouts. Runs as the service nxt-server.'
      : 'Description: nxt device agent\n Registers with an nxt server, verifies every pushed module (Ed25519, SHA-256) and\n hot-loads it. Run "nxt-client setup --server HOST:PORT --trust release.pub" first.',
    '',
  ].join('\n'));
  const file = join(args.out, `${name}_${version}_all.deb`);
  rmSync(file, { force: true });
  execFileSync('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', deb, file], { stdio: ['ignore', 'ignore', 'inherit'] });
  console.log(`wrote ${file}`);
}

function fail(message) {
  console.error(`package: ${message}`);
  process.exit(2);
}

