/**
 * The log job's filter, pure: lines that start with a timestamp and a severity word
 * ("2026-11-23T10:00:00Z ERROR disk full", or with a space instead of the T) are kept when they are
 * within [since, until), at least `severity` (syslog order), and match `grep`. A line without a
 * readable timestamp is kept only when no time bound is given, and without a known severity only
 * when no severity is asked for.
 */
export interface LogFilter {
  readonly since?: number;
  readonly until?: number;
  readonly severity?: string;
  readonly grep?: RegExp;
}

const SEVERITIES = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];
const ALIASES: Record<string, string> = { warn: 'warning', err: 'error', crit: 'critical', emerg: 'emergency', fatal: 'critical' };

export function severityRank(word: string): number {
  const w = word.toLowerCase();
  return SEVERITIES.indexOf(ALIASES[w] ?? w);
}

const LINE = /^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)\s+\[?([A-Za-z]+)\]?[\s:]/;

export function matches(line: string, f: LogFilter): boolean {
  const m = LINE.exec(line);
  if (f.since !== undefined || f.until !== undefined) {
    const t = m ? Date.parse(m[1]!.replace(' ', 'T')) : NaN;
    if (Number.isNaN(t)) return false;
    if (f.since !== undefined && t < f.since) return false;
    if (f.until !== undefined && t >= f.until) return false;
  }
  if (f.severity !== undefined) {
    const rank = m ? severityRank(m[2]!) : -1;
    if (rank < 0 || rank < severityRank(f.severity)) return false;
  }
  return f.grep === undefined || f.grep.test(line);
}
