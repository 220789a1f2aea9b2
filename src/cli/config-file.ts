/**
 * A configuration file for either program: JSON whose keys are the long option names in
 * camelCase (`"stateDir"`, `"renew"`, `"autoUpdate"`…). A flag on the command line (or its
 * environment variable) wins over the file; the file wins over the defaults.
 *
 * The file is checked against a JSON Schema (Ajv) made from the program's settings, and every
 * mistake is reported at once, each with its key, its line, and for an unknown key the known one
 * it most resembles: a typo never silently falls back to a default. A JSON syntax error is given
 * by line and column.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { Command } from 'commander';
import { createRequire } from 'node:module';
import type { Ajv as AjvClass, ErrorObject } from 'ajv';
import { NxtError, errorMessage } from '../errors.js';

/** What one setting may hold. */
export type ConfigType = 'string' | 'number' | 'boolean' | ConfigSpec;

export interface ConfigSpec {
  /** 'map': an object of names (a-z, 0-9, _, -) to non-empty strings (the device's installers). */
  readonly type: 'string' | 'number' | 'boolean' | 'map';
  readonly enum?: readonly string[];
  readonly format?: ConfigFormat;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly integer?: boolean;
}

export type ConfigFormat = 'http-url' | 'smtp-url' | 'host' | 'ip' | 'email' | 'name';

/** What each format accepts, and how an error says it. */
export const FORMATS: Record<ConfigFormat, { check: (value: string) => boolean; says: string }> = {
  'http-url': { check: (v) => urlWithScheme(v, ['http:', 'https:']), says: 'an http:// or https:// URL' },
  'smtp-url': { check: (v) => urlWithScheme(v, ['smtp:', 'smtps:']), says: 'an smtp:// or smtps:// URL' },
  host: { check: (v) => isIP(v) !== 0 || /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(v), says: 'a host name or an IP address' },
  ip: { check: (v) => isIP(v) !== 0, says: 'an IP address' },
  // What a mail server takes, roughly; "Name <a@b>" too (a From line).
  email: { check: (v) => /^([^<>]*<)?[^\s@<>]+@[^\s@<>]+(>)?$/.test(v.trim()), says: 'an email address' },
  // A device type or channel: what a release's signed compatibility can name.
  name: { check: (v) => /^[A-Za-z0-9._-]{1,64}$/.test(v), says: '1-64 letters, digits, ".", "_" or "-"' },
};

function urlWithScheme(value: string, schemes: string[]): boolean {
  try {
    const u = new URL(value);
    return schemes.includes(u.protocol) && u.hostname !== '';
  } catch {
    return false;
  }
}

const spec = (t: ConfigType): ConfigSpec => (typeof t === 'string' ? { type: t } : t);

/** The JSON Schema of a settings object. */
export function configSchema(settings: Record<string, ConfigType>): object {
  const properties: Record<string, object> = {};
  for (const [key, t] of Object.entries(settings)) {
    const s = spec(t);
    if (s.type === 'map') {
      properties[key] = { type: 'object', propertyNames: { pattern: '^[a-z0-9_-]{1,32}$' }, additionalProperties: { type: 'string', minLength: 1, maxLength: 1024 } };
      continue;
    }
    properties[key] = {
      type: s.type === 'number' && s.integer ? 'integer' : s.type,
      ...(s.enum ? { enum: s.enum } : {}),
      ...(s.format ? { format: s.format } : {}),
      ...(s.minimum === undefined ? {} : { minimum: s.minimum }),
      ...(s.maximum === undefined ? {} : { maximum: s.maximum }),
    };
  }
  return { type: 'object', properties, additionalProperties: false };
}

/**
 * Every mistake in `text` (a config file's content) as one line each; empty when it is good.
 * Also returns the settings when the text is JSON.
 */
export function checkConfig(text: string, settings: Record<string, ConfigType>): { errors: string[]; values?: Record<string, unknown> } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return { errors: [describeSyntaxError(text, err)] };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return { errors: ['expected a JSON object of settings ({"key": value, …})'] };
  // Loaded only when a config file is read: ~40 ms a program without one need not pay at start.
  const { Ajv } = createRequire(import.meta.url)('ajv') as { Ajv: typeof AjvClass };
  const ajv = new Ajv({ allErrors: true, strict: true });
  for (const [name, f] of Object.entries(FORMATS)) ajv.addFormat(name, f.check);
  const validate = ajv.compile(configSchema(settings));
  if (validate(parsed)) return { errors: [], values: parsed as Record<string, unknown> };
  const known = Object.keys(settings);
  const errors = (validate.errors ?? []).map((e) => describeError(e, parsed as Record<string, unknown>, text, known, settings));
  return { errors: [...new Set(errors)], values: parsed as Record<string, unknown> };
}

function describeError(e: ErrorObject, values: Record<string, unknown>, text: string, known: string[], settings: Record<string, ConfigType>): string {
  if (e.keyword === 'additionalProperties') {
    const key = (e.params as { additionalProperty: string }).additionalProperty;
    const near = closest(key, known);
    return `${where(text, key)}unknown key "${key}"${near ? ` (did you mean "${near}"?)` : ''}`;
  }
  const key = e.instancePath.replace(/^\//, '').split('/')[0]!;
  const value = JSON.stringify(values[key]);
  const s = spec(settings[key] ?? 'string');
  if (s.type === 'map') return `${where(text, key)}"${key}" must map names (a-z, 0-9, _, -) to non-empty strings, e.g. {"deb": "apt-get install -y {file}"}`;
  switch (e.keyword) {
    case 'type': return `${where(text, key)}"${key}" must be ${s.integer ? 'a whole number' : `a ${s.type}`}, not ${value}`;
    case 'enum': return `${where(text, key)}"${key}" must be one of ${(s.enum ?? []).join(', ')}, not ${value}`;
    case 'format': return `${where(text, key)}"${key}" must be ${FORMATS[s.format!].says}, not ${value}`;
    case 'minimum': return `${where(text, key)}"${key}" must be at least ${s.minimum}, not ${value}`;
    case 'maximum': return `${where(text, key)}"${key}" must be at most ${s.maximum}, not ${value}`;
    default: return `${where(text, key)}"${key}": ${e.message ?? 'not valid'}`;
  }
}

/** "line N: " for the first line where `"key"` appears as a key. */
function where(text: string, key: string): string {
  const at = text.search(new RegExp(`"${key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"\\s*:`));
  return at < 0 ? '' : `line ${lineColumn(text, at).line}: `;
}

function lineColumn(text: string, position: number): { line: number; column: number } {
  const before = text.slice(0, position);
  const line = before.split('\n').length;
  return { line, column: position - before.lastIndexOf('\n') };
}

/** JSON.parse's "at position N" as a line and column (newer Node says so itself). */
function describeSyntaxError(text: string, err: unknown): string {
  const message = errorMessage(err).replace(/ \(line \d+ column \d+\)$/, '');
  const m = /at position (\d+)/.exec(message);
  if (!m) return `not JSON: ${message}`;
  const { line, column } = lineColumn(text, Number(m[1]));
  return `line ${line}, column ${column}: not JSON: ${message.replace(/ in JSON at position \d+/, '')}`;
}

/** The known key nearest to `key` (edit distance at most a third of its length, at least 2). */
export function closest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(key.length / 3)) + 1;
  for (const k of known) {
    const d = editDistance(key.toLowerCase(), k.toLowerCase());
    if (d < bestDistance) { best = k; bestDistance = d; }
  }
  return best;
}

/** Optimal string alignment distance: insertions, deletions, substitutions, and a swap of two
 *  neighbours (prot → port) each count one. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i]!;
      row[j] = Math.min(d[i - 1]![j]! + 1, row[j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

export function applyConfigFile(command: Command, file: string, settings: Record<string, ConfigType>): void {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new NxtError('bad-config', `config ${file}: ${errorMessage(err)}`);
  }
  const { errors, values } = checkConfig(text, settings);
  if (errors.length > 0) {
    throw new NxtError('bad-config', `config ${file}: ${errors.length === 1 ? errors[0] : `${errors.length} mistakes:\n  ${errors.join('\n  ')}`}`);
  }
  for (const [key, value] of Object.entries(values!)) {
    const source = command.getOptionValueSource(key);
    // Flags and environment variables take precedence; an empty variable counts as unset.
    if (source === 'cli' || (source === 'env' && command.getOptionValue(key) !== '')) continue;
    command.setOptionValueWithSource(key, typeof value === 'number' ? String(value) : value, 'config');
  }
}
