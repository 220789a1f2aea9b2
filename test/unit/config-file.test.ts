/** Config files: every mistake at once, by line, with the key meant; JSON errors by line and column. */
import { describe, expect, it } from 'vitest';
import { checkConfig, closest, type ConfigType } from '../../src/cli/config-file.js';

const SETTINGS: Record<string, ConfigType> = {
  port: { type: 'number', integer: true, minimum: 1, maximum: 65535 },
  server: { type: 'string', format: 'host' },
  policy: { type: 'string', enum: ['auto', 'defer'] },
  notifyWebhook: { type: 'string', format: 'http-url' },
  multicast: 'boolean',
};

describe('config files', () => {
  it('report three mistakes at once, each with its line, and the key a typo meant', () => {
    const text = '{\n  "server": "gw 1",\n  "prot": 9000,\n  "policy": "later",\n  "multicast": "yes"\n}\n';
    expect([...checkConfig(text, SETTINGS).errors].sort()).toEqual([
      'line 2: "server" must be a host name or an IP address, not "gw 1"',
      'line 3: unknown key "prot" (did you mean "port"?)',
      'line 4: "policy" must be one of auto, defer, not "later"',
      'line 5: "multicast" must be a boolean, not "yes"',
    ]);
  });

  it('check ranges, whole numbers and URLs', () => {
    const { errors } = checkConfig('{"port": 70000, "notifyWebhook": "ftp://x", "server": "10.0.0.1"}', SETTINGS);
    expect(errors).toEqual(['line 1: "port" must be at most 65535, not 70000', 'line 1: "notifyWebhook" must be an http:// or https:// URL, not "ftp://x"']);
    expect(checkConfig('{"port": 9000.5}', SETTINGS).errors).toEqual(['line 1: "port" must be a whole number, not 9000.5']);
    expect(checkConfig('{"port": 9000, "server": "updates.example.com", "notifyWebhook": "https://hooks.example.com/nxt"}', SETTINGS)).toEqual({
      errors: [], values: { port: 9000, server: 'updates.example.com', notifyWebhook: 'https://hooks.example.com/nxt' },
    });
  });

  it('give a JSON syntax error by line and column', () => {
    expect(checkConfig('{\n  "port": 9000,\n  server: "x"\n}', SETTINGS).errors).toEqual(['line 3, column 3: not JSON: Expected double-quoted property name']);
    expect(checkConfig('[1]', SETTINGS).errors).toEqual(['expected a JSON object of settings ({"key": value, …})']);
  });

  it('a map of installers: names to commands', () => {
    const settings: Record<string, ConfigType> = { installers: { type: 'map' } };
    expect(checkConfig('{"installers": {"deb": "apt-get install -y {file}"}}', settings).errors).toEqual([]);
    for (const bad of ['{"installers": "apt"}', '{"installers": {"Deb!": "x"}}', '{"installers": {"deb": ""}}']) {
      expect(checkConfig(bad, settings).errors).toEqual(['line 1: "installers" must map names (a-z, 0-9, _, -) to non-empty strings, e.g. {"deb": "apt-get install -y {file}"}']);
    }
  });

  it('suggest only a key that is near', () => {
    expect(closest('prot', ['port', 'policy'])).toBe('port');
    expect(closest('notifyWebhok', ['notifyWebhook', 'notifyEmail'])).toBe('notifyWebhook');
    expect(closest('colour', ['port', 'policy'])).toBeUndefined();
  });
});
