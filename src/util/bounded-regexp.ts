/**
 * A regular expression typed by someone else (an operator's `--grep`, run on every device's
 * logs) that cannot hang the thread that runs it. V8's regular expressions backtrack: `(a|b)*c`
 * against a 2 MB line without a `c` ran longer than 20 s (quadratic), `(a+)+$` against 32 a's
 * and a b 52 s (exponential), and the device's agent (which runs its jobs) with it: no pushes,
 * no renewals meanwhile.
 *
 * V8 also has a linear-time engine (the one behind the `l` flag). Switched on here, with the
 * fallback to it for any expression that backtracks more than V8's threshold (50,000 steps),
 * an expression runs as fast as usual and at worst in time linear in its input. The linear
 * engine does not take backreferences or lookahead (nor, in Node 20, lookbehind; nor, in
 * Node 20, case-insensitive matching), so such a pattern is refused rather than left to
 * backtrack: the `l` flag's check says which, for the Node that runs it.
 */
import v8 from 'node:v8';

let enabled = false;

/** `pattern` as a RegExp that never runs longer than linear time; throws a SyntaxError that says
 *  why when it is not a regular expression, or not one the linear engine can run. */
export function boundedRegExp(pattern: string): RegExp {
  if (!enabled) {
    // Both flags are read as expressions are compiled and run, so setting them now, before the
    // first such expression, is in time (Node 20 to 24).
    v8.setFlagsFromString('--enable-experimental-regexp-engine');
    v8.setFlagsFromString('--enable-experimental-regexp-engine-on-excessive-backtracks');
    enabled = true;
  }
  const plain = new RegExp(pattern); // a SyntaxError if it is not one at all
  try {
    new RegExp(pattern, 'l');
  } catch {
    throw new SyntaxError(`/${pattern}/ cannot be matched in linear time (backreferences and lookahead cannot be, nor lookbehind on Node 20)`);
  }
  return plain;
}
