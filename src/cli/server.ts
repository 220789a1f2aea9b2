#!/usr/bin/env node
/**
 * nxt-server's entry point. It only decides what to load: `ctl` (what scripts call, once per
 * command) needs the control socket's client and nothing else, so it starts in about the time
 * Node itself takes; everything else loads the whole program (server-program.ts).
 */
import { enableCompileCache } from './compile-cache.js';
import { keepRunningWithoutOutput } from './lifecycle.js';

enableCompileCache();
keepRunningWithoutOutput();

const ctl = parseCtl(process.argv.slice(2));
if (ctl) {
  const { runCtl } = await import('./ctl.js');
  await runCtl(ctl.stateDir, ctl.words, ctl.json);
} else {
  await import('./server-program.js');
}

/**
 * `ctl [-s DIR | --state-dir DIR | --state-dir=DIR] [--json] <command…>`, or undefined for
 * anything else (including `ctl --help` and a bare `ctl`, which the full program explains).
 * The state dir defaults to NXT_STATE_DIR (the packaged nxt-ctl sets it to the service's).
 */
function parseCtl(args: string[]): { stateDir: string; words: string[]; json: boolean } | undefined {
  if (args[0] !== 'ctl') return undefined;
  let stateDir = process.env.NXT_STATE_DIR || 'state/server';
  let json = false;
  let i = 1;
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a === '-s' || a === '--state-dir') {
      if (args[i + 1] === undefined) return undefined;
      stateDir = args[++i]!;
    } else if (a.startsWith('--state-dir=')) {
      stateDir = a.slice('--state-dir='.length);
    } else if (a === '--json') {
      json = true;
    } else if (a.startsWith('-')) {
      return undefined;
    } else {
      break;
    }
  }
  const words = args.slice(i);
  return words.length > 0 ? { stateDir, words, json } : undefined;
}
