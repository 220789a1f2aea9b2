/**
 * A device's status and error report (`job report`): what the agent knows of itself — the module
 * it runs and how it got there, the update kept for `upgrade`, the update state, uptime, free
 * space where it keeps things, the last warnings it logged, its counters — and, under `plugin`,
 * whatever the active module's optional statusReport() returns (bounded in time and size).
 */
import { statfsSync } from 'node:fs';
import os from 'node:os';
import { formatReleaseVersion } from '../protocol/release-version.js';
import type { Roots } from '../jobs/roots.js';
import type { ClientAgent } from './agent.js';

/** The plugin's part: answered within this, and no bigger than this much JSON. */
export const PLUGIN_REPORT_TIMEOUT_MS = 2000;
export const PLUGIN_REPORT_MAX_BYTES = 16 * 1024;
/** How many of the last warnings and errors a report carries. */
export const RECENT_LINES = 20;

/** The last `RECENT_LINES` lines worth reporting, with when they were said. */
export class RecentLines {
  private readonly lines: string[] = [];
  add(line: string, now = new Date()): void {
    this.lines.push(`${now.toISOString()} ${line}`);
    if (this.lines.length > RECENT_LINES) this.lines.shift();
  }
  get all(): readonly string[] { return this.lines; }
}

function freeBytes(dir: string): number | undefined {
  try {
    const fs = statfsSync(dir);
    return fs.bavail * fs.bsize;
  } catch {
    return undefined;
  }
}

export async function buildStatusReport(o: {
  agent: ClientAgent; roots: Roots; dataDir: string; recent: RecentLines; agentVersion: string; startedAt: number; facts: Record<string, string | undefined>;
}): Promise<Record<string, unknown>> {
  const { agent } = o;
  const active = agent.active;
  const kept = agent.pendingUpgrade;
  const plugin = active.host ? await active.host.statusReport(PLUGIN_REPORT_TIMEOUT_MS, PLUGIN_REPORT_MAX_BYTES) : undefined;
  return {
    at: new Date().toISOString(),
    agent: { version: o.agentVersion, node: process.versions.node, uptimeSeconds: Math.round((Date.now() - o.startedAt) / 1000), hostUptimeSeconds: Math.round(os.uptime()), ...o.facts },
    module: { name: active.name, release: formatReleaseVersion(active.version), product: `${active.product.major}.${active.product.minor} ${active.product.productName}`, sha256: active.sha256 ?? null },
    kept: kept ? { name: kept.name, release: formatReleaseVersion(kept.version) } : null,
    updateState: agent.updateState,
    disk: {
      dataFreeBytes: freeBytes(o.dataDir) ?? null, logsFreeBytes: freeBytes(o.roots.logs) ?? null,
      configFreeBytes: freeBytes(o.roots.config) ?? null, dropboxFreeBytes: freeBytes(o.roots.dropbox) ?? null,
    },
    memory: { rssBytes: process.memoryUsage().rss, freeBytes: os.freemem(), totalBytes: os.totalmem() },
    recentWarnings: o.recent.all,
    counters: { ...agent.stats, ...Object.fromEntries(Object.entries(agent.channel.stats).map(([k, v]) => [`channel.${k}`, v])) },
    plugin: plugin === undefined ? null : plugin,
  };
}
