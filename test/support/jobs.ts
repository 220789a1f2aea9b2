/** Queue a maintenance job at a server's console and wait for its result line; returns the line. */
import type { Proc } from './processes.js';

export async function runJobAt(server: Proc, command: string): Promise<string> {
  const queued = (await server.run(`job ${command}`, /job (\d+) \([\w-]+\) queued/)).match(/job (\d+)/)![1]!;
  return (await server.waitFor(new RegExp(`job ${queued} \\([\\w-]+\\) on \\w+: .*\\n`), 20_000))[0]!;
}
