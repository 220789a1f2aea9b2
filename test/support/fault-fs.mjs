/**
 * Fault injection for end-to-end tests, loaded into a real server or client with
 * `NODE_OPTIONS=--import <this file>`: while the file named by NXT_FAULT_SWITCH exists, every
 * open for writing, write, fsync, link and rename of a path containing NXT_FAULT_MATCH fails with the error
 * code NXT_FAULT_CODE (ENOSPC, EIO, …), as a full or failing disk would fail it. The switch lets
 * a test start a process normally, then turn the disk bad under it, and good again; what it
 * contains, if anything, replaces NXT_FAULT_MATCH ("a|b": paths containing a or b).
 *
 * It replaces functions on the `fs` module and re-syncs the named ESM exports, so code that
 * imported `{ writeSync }` from 'node:fs' sees the faulty version. The async `fs/promises` calls
 * the transfers use are left alone: the full-disk tests cover those on a real tmpfs.
 */
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { constants } from 'node:os';

const match = process.env.NXT_FAULT_MATCH ?? '';
const code = process.env.NXT_FAULT_CODE ?? 'EIO';
const switchFile = process.env.NXT_FAULT_SWITCH ?? '';
const readFileSync = fs.readFileSync;
const writeFds = new Map();

/** The switch file may name other paths than NXT_FAULT_MATCH: substrings separated by "|". */
function on(path) {
  if (switchFile === '' || typeof path !== 'string') return false;
  let text;
  try { text = readFileSync(switchFile, 'utf8').trim(); } catch { return false; }
  return (text || match).split('|').some((part) => part !== '' && path.includes(part));
}

function fail(syscall, path) {
  const err = new Error(`${code}: injected fault, ${syscall} '${path}'`);
  return Object.assign(err, { code, errno: -(constants.errno[code] ?? 5), syscall, path });
}

const wrap = (name, pathArgs) => {
  const real = fs[name];
  fs[name] = function (...args) {
    for (const i of pathArgs) if (on(args[i])) throw fail(name, args[i]);
    return real.apply(this, args);
  };
};

// Opens for reading are left alone: a full disk still reads, and the test is about writes.
const writing = (flags) => typeof flags === 'number'
  ? (flags & (fs.constants.O_WRONLY | fs.constants.O_RDWR | fs.constants.O_CREAT)) !== 0
  : typeof flags === 'string' && /[wa+]/.test(flags);
const realOpen = fs.openSync;
fs.openSync = function (path, flags, ...rest) {
  if (writing(flags) && on(path)) throw fail('openSync', path);
  const fd = realOpen.call(this, path, flags, ...rest);
  if (writing(flags)) writeFds.set(fd, path); else writeFds.delete(fd);
  return fd;
};
for (const name of ['writeSync', 'fsyncSync']) {
  const real = fs[name];
  fs[name] = function (fd, ...rest) {
    if (on(writeFds.get(fd))) throw fail(name, writeFds.get(fd));
    return real.call(this, fd, ...rest);
  };
}
wrap('writeFileSync', [0]);
wrap('appendFileSync', [0]);
wrap('renameSync', [0, 1]);
wrap('linkSync', [0, 1]);
syncBuiltinESMExports();

