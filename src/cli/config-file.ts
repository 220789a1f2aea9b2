/**
 * A configuration file for either program: JSON whose keys are the long option names in
 * camelCase (`"stateDir"`, `"renew"`, `"autoUpdate"`…). A flag on the command line (or its
 * environment variable) wins over the file; the file wins over the defaults. Unknown keys and
 * wrong types are errors naming the key, so a typo never silently falls back to a default.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { NxtError, errorMessage } from '../errors.js';

export type ConfigType = 'string' | 'number' | 'boolean';

export function applyConfigFile(command: Command, file: string, schema: Record<string, ConfigType>): void {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new NxtError('bad-config', `config ${file}: ${errorMessage(err)}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new NxtError('bad-config', `config ${file}: expected a JSON object of settings`);
  for (const [key, value] of Object.entries(parsed)) {
    const type = schema[key];
    if (!type) throw new NxtError('bad-config', `config ${file}: unknown key "${key}" (known: ${Object.keys(schema).join(', ')})`);
    const ok = type === 'boolean' ? typeof value === 'boolean' : type === 'number' ? typeof value === 'number' && Number.isFinite(value) : typeof value === 'string';
    if (!ok) throw new NxtError('bad-config', `config ${file}: "${key}" must be a ${type}, not ${JSON.stringify(value)}`);
    const source = command.getOptionValueSource(key);
    // Flags and environment variables take precedence; an empty variable counts as unset.
    if (source === 'cli' || (source === 'env' && command.getOptionValue(key) !== '')) continue;
    command.setOptionValueWithSource(key, type === 'number' ? String(value) : value, 'config');
  }
}
