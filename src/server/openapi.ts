/** The HTTP API's description (OpenAPI 3.1), served at /api/v1/openapi.json. */
import type { AnyTypedCommand } from './typed-command.js';

const envelope = {
  type: 'object',
  description: 'What a console command did: as `nxt-server ctl --json` prints it',
  properties: {
    ok: { type: 'boolean' }, status: { type: 'integer', description: '0 done, 1 failed, 2 asked wrongly' },
    command: { type: 'array', items: { type: 'string' } }, output: { type: 'array', items: { type: 'string' } },
    errors: { type: 'array', items: { type: 'string' } }, data: { type: 'array', description: 'structured results (a push: every device\'s outcome)' },
  },
};
const answers = {
  200: { description: 'done', content: { 'application/json': { schema: envelope } } },
  400: { description: 'asked wrongly (usage)', content: { 'application/json': { schema: envelope } } },
  401: { description: 'no valid API token' },
  422: { description: 'the command failed (a push failed on a device, …)', content: { 'application/json': { schema: envelope } } },
};
const list = (what: string, command: string): object => ({
  get: { summary: `${what} (the console's \`${command} --json\`)`, responses: { 200: { description: 'a JSON list', content: { 'application/json': { schema: { type: 'array' } } } }, 401: { description: 'no valid API token' } } },
});
const deviceId = { name: 'id', in: 'path', required: true, schema: { type: 'string' }, description: 'a device id or a unique prefix of it' };

export const OPENAPI = {
  openapi: '3.1.0',
  info: {
    title: 'nxt server API', version: '1',
    description: 'Every node serves it with --http ADDR:PORT. Tokens: `token create NAME` at the console. The GET resources that are typed commands '
      + '(devices, requests, releases, history, status, versions, jobs, results, nodes, rollouts) take the fields of that command\'s input (/api/v1/commands/NAME) in '
      + 'their query string, e.g. /api/v1/history?device=27371aee&last=5.',
  },
  components: { securitySchemes: { token: { type: 'http', scheme: 'bearer' } } },
  security: [{ token: [] }],
  paths: {
    '/api/v1/health': { get: { summary: 'is the server up (no token needed)', security: [], responses: { 200: { description: '{"ok": true, "version": "…"}' } } } },
    '/api/v1/devices': list('the fleet', 'clients'),
    '/api/v1/requests': list('enrollment requests, and rejected or revoked devices', 'requests'),
    '/api/v1/releases': {
      ...list('releases pushed or stored', 'releases'),
      post: {
        summary: 'upload a module (the body is its bytes); push it with POST /api/v1/commands/push {"file": file, "to": "kiosks"}',
        parameters: [{ name: 'name', in: 'query', required: true, schema: { type: 'string' }, description: 'its file name, e.g. router_2_0.mjs (the version comes from it)' }],
        requestBody: { content: { 'application/octet-stream': {} } },
        responses: { 201: { description: '{"file", "name", "size", "push"}' }, 400: { description: 'a bad name' }, 401: { description: 'no valid API token' }, 413: { description: 'too large' } },
      },
    },
    '/api/v1/history': list('push results', 'history'),
    '/api/v1/status': list('pushes in progress, with each device\'s progress', 'status'),
    '/api/v1/versions': list('every online device asked for its version now', 'versions'),
    '/api/v1/jobs': list('maintenance jobs', 'jobs'),
    '/api/v1/results': list('maintenance jobs\' results', 'results'),
    '/api/v1/rollouts': list('rollout campaigns, each device\'s step, the counts', 'rollout status'),
    '/api/v1/nodes': list('the server nodes serving the fleet (several nodes on one PostgreSQL)', 'nodes'),
    '/api/v1/events': {
      get: {
        summary: 'server-sent events while the connection lasts: fleet (a device registered, came back, left, asked to enroll), push (a device\'s result), '
          + 'progress (every device\'s bytes, twice a second while pushes run), outcome (a probation ended), rollout (a campaign step), job (a job\'s result)',
        responses: { 200: { description: 'text/event-stream: `event: NAME` and `data: JSON` per event', content: { 'text/event-stream': {} } }, 401: { description: 'no valid API token' } },
      },
    },
    '/api/v1/devices/{id}/approve': { post: { summary: 'let a device into the fleet', parameters: [deviceId], responses: answers } },
    '/api/v1/devices/{id}/reject': { post: { summary: 'turn a device away', parameters: [deviceId], responses: answers } },
    '/api/v1/devices/{id}/revoke': { post: { summary: 'withdraw a device\'s key', parameters: [deviceId], responses: answers } },
    '/api/v1/devices/{id}/tags': {
      post: { summary: 'put a device in a group', parameters: [deviceId], requestBody: { content: { 'application/json': { schema: { type: 'object', properties: { group: { type: 'string' } }, required: ['group'] } } } }, responses: answers },
    },
    '/api/v1/commands': {
      post: {
        summary: 'any console command (push, rollout, job, cancel, …), as words (each also at /api/v1/commands/NAME with typed input)',
        requestBody: { content: { 'application/json': { schema: { type: 'object', properties: { words: { type: 'array', items: { type: 'string' } } }, required: ['words'] }, example: { words: ['push', '/var/lib/nxt-server/api-uploads/…/router_2_0.mjs', '--to', 'kiosks'] } } } },
        responses: answers,
      },
    },
  },
} as const;

/** The description with each typed command's own path, its input schema as the request body.
 *  (The GET resources that are typed commands take the same fields in their query string.) */
export function openApiFor(typed: Record<string, AnyTypedCommand>): object {
  const paths: Record<string, object> = { ...OPENAPI.paths };
  for (const [name, c] of Object.entries(typed)) {
    paths[`/api/v1/commands/${name}`] = {
      post: {
        summary: `${c.help.replace(/\n/g, '; ')} (the console's \`${c.usage}\`)`,
        requestBody: { required: true, content: { 'application/json': { schema: c.input } } },
        responses: {
          200: { description: '{"ok": true, "command": NAME, "output": …}: the output, typed (the console prints it as text)' },
          400: { description: 'the body does not fit the schema: {"ok": false, "code": "usage", "error"}' },
          401: { description: 'no valid API token' },
          422: { description: 'the command refused: {"ok": false, "code", "error"} (no such device, …)' },
        },
      },
    };
  }
  return { ...OPENAPI, paths };
}
