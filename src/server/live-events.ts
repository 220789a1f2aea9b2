/**
 * What happens in the server, as events for the dashboard (GET /api/v1/events): devices coming,
 * going and asking to enroll, push results and, while pushes run, each device's progress twice a
 * second, probation outcomes, campaign steps, job results. Each event is small; the page fetches
 * what it shows from the API when an event says it changed.
 */
import { EventEmitter } from 'node:events';
import { formatReleaseVersion } from '../protocol/release-version.js';
import { resultCodeName } from '../protocol/result-codes.js';
import type { Campaign, CampaignEvent } from './campaign.js';
import type { DeviceRecord } from './devices.js';
import type { Job } from './job-store.js';
import type { ClientRecord } from './registry.js';
import type { NxtServer, PushReport, TrialOutcome } from './server.js';

export const PROGRESS_EVERY_MS = 500;

export type Listener = (event: string, data: unknown) => void;

export function liveEvents(server: NxtServer, rollouts?: EventEmitter): (listener: Listener) => () => void {
  const listeners = new Set<Listener>();
  const send = (event: string, data: unknown): void => { for (const l of listeners) l(event, data); };
  const fleet = (kind: string) => (c: ClientRecord | DeviceRecord): void => send('fleet', { kind, id: c.id });
  server.on('client-registered', fleet('registered'));
  server.on('client-back', fleet('back'));
  server.on('client-gone', fleet('gone'));
  server.on('enrollment-request', fleet('request'));
  server.on('push-result', (r: PushReport) => send('push', {
    id: r.client.id, module: r.release.name, release: formatReleaseVersion(r.release.version), ok: r.ok, already: r.already,
    result: resultCodeName(r.outcome.code), message: r.outcome.message, active: r.outcome.active ? formatReleaseVersion(r.outcome.active) : undefined, ms: Math.round(r.elapsedMs),
  }));
  server.on('trial-outcome', (t: TrialOutcome) => send('outcome', { id: t.client.id, module: t.name, release: formatReleaseVersion(t.version), committed: t.committed, message: t.message }));
  server.on('job-result', (j: Job) => send('job', { id: j.id, device: j.device, kind: j.kind, state: j.state, result: j.result }));
  rollouts?.on('event', (c: Campaign, e: CampaignEvent) => send('rollout', { id: c.id, state: c.record.state, kind: e.kind, counts: c.counts() }));
  // Progress only while something is being pushed, and only to someone listening.
  let ticker: NodeJS.Timeout | undefined;
  const tick = (): void => {
    const sessions = server.activeSessions;
    if (sessions.length === 0) return;
    send('progress', sessions.map((s) => ({
      id: s.client.id, module: s.release.manifest.name, release: formatReleaseVersion(s.release.manifest.version), phase: s.progress.phase,
      acked: s.progress.acked, total: s.progress.total, bytes: Math.min(s.release.manifest.size, s.progress.acked * s.chunkSize), size: s.release.manifest.size,
    })));
  };
  return (listener) => {
    listeners.add(listener);
    if (!ticker) { ticker = setInterval(tick, PROGRESS_EVERY_MS); ticker.unref(); }
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0) { clearInterval(ticker); ticker = undefined; }
    };
  };
}
