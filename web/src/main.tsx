/**
 * The nxt dashboard: the fleet, enrollment, releases and pushes, rollout campaigns, live. It uses
 * only the public HTTP API (api.ts) with the operator's token, and redraws when the server's
 * events say something changed.
 */
import { render } from 'preact';
import { useCallback, useEffect, useMemo, useState } from 'preact/hooks';
import type { ChartConfiguration } from 'chart.js';
import {
  ApiError, command, decide, get, listen, savedToken, saveToken, upload,
  type Campaign, type Device, type HistoryEntry, type Job, type Progress, type ReleaseSummary, type Request, type Step,
} from './api.js';
import { ChartView, PALETTE } from './chart.js';
import './style.css';

type Page = { name: 'fleet' } | { name: 'device'; id: string } | { name: 'enrollment' } | { name: 'releases' } | { name: 'rollouts' };

function pageOf(hash: string): Page {
  const [name, id] = hash.replace(/^#\/?/, '').split('/');
  if (name === 'device' && id) return { name, id };
  if (name === 'enrollment' || name === 'releases' || name === 'rollouts') return { name };
  return { name: 'fleet' };
}

const short = (id: string): string => id.slice(0, 12);
const mib = (n: number): string => (n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`);
const ago = (iso: string): string => {
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (!Number.isFinite(s)) return '-';
  return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.round(s / 60)}m ago` : s < 86400 ? `${Math.round(s / 3600)}h ago` : `${Math.round(s / 86400)}d ago`;
};

/** Data from the API, fetched again whenever `version` changes (an event said so). */
function useResource<T>(resource: string, version: number, initial: T): { data: T; error?: string } {
  const [state, setState] = useState<{ data: T; error?: string }>({ data: initial });
  useEffect(() => {
    let live = true;
    get<T>(resource).then((data) => { if (live) setState({ data }); }, (err: Error) => { if (live) setState((s) => ({ data: s.data, error: err.message })); });
    return () => { live = false; };
  }, [resource, version]);
  return state;
}

function Login({ onToken }: { onToken: (t: string) => void }): preact.JSX.Element {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string>();
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    saveToken(token.trim());
    try {
      await get('devices');
      onToken(token.trim());
    } catch (err) {
      saveToken(undefined);
      setError(err instanceof ApiError && err.status === 401 ? 'That token is not valid here (token create NAME at the server console makes one).' : (err as Error).message);
    }
  };
  return (
    <main class="login">
      <h1>nxt fleet</h1>
      <form onSubmit={(e) => void submit(e)}>
        <label for="token">API token</label>
        <input id="token" type="password" autocomplete="off" value={token} onInput={(e) => setToken((e.target as HTMLInputElement).value)} placeholder="nxt_…" required />
        <button type="submit">Sign in</button>
        {error && <p role="alert" class="error">{error}</p>}
      </form>
    </main>
  );
}

function Fleet({ version }: { version: number }): preact.JSX.Element {
  const { data: devices, error } = useResource<Device[]>('devices', version, []);
  // The chart needs more than the console's newest 20 results: a fleet's pushes, bounded.
  const { data: history } = useResource<HistoryEntry[]>('history?last=2000', version, []);
  const [search, setSearch] = useState('');
  const [show, setShow] = useState<'all' | 'online' | 'offline'>('all');
  const shown = devices.filter((d) => (show === 'all' || d.online === (show === 'online'))
    && [d.id, d.address, d.release, d.inventory.hostname ?? '', ...d.tags].some((f) => String(f).toLowerCase().includes(search.toLowerCase())));
  return (
    <section aria-labelledby="fleet-h">
      <h2 id="fleet-h">Fleet</h2>
      {error && <p role="alert" class="error">{error}</p>}
      <p class="summary">{devices.length} devices, {devices.filter((d) => d.online).length} online</p>
      <div class="filters">
        <label>Search <input type="search" value={search} onInput={(e) => setSearch((e.target as HTMLInputElement).value)} placeholder="id, hostname, group, version" /></label>
        <label>Show <select value={show} onChange={(e) => setShow((e.target as HTMLSelectElement).value as typeof show)}>
          <option value="all">all</option><option value="online">online</option><option value="offline">offline</option>
        </select></label>
      </div>
      <div class="scroll">
        <table>
          <thead><tr><th>ID</th><th>Hostname</th><th>Address</th><th>Groups</th><th>Release</th><th>Product</th><th>Update</th><th>State</th><th>Last seen</th></tr></thead>
          <tbody>
            {shown.map((d) => (
              <tr key={d.id} data-device={d.id}>
                <td><a href={`#/device/${d.id}`}>{short(d.id)}</a></td>
                <td>{d.inventory.hostname ?? '-'}</td>
                <td>{d.address}</td>
                <td>{d.tags.join(', ') || '-'}</td>
                <td class="release">{d.release}</td>
                <td>{d.product} {d.productName}</td>
                <td>{d.updateState}{d.updateResult !== 'initial' ? ` (${d.updateResult})` : ''}</td>
                <td><span class={d.online ? 'badge ok' : 'badge'}>{d.online ? 'online' : 'offline'}</span></td>
                <td>{ago(d.lastSeen)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <h3>Releases across the fleet over time</h3>
      <VersionsChart history={history} />
    </section>
  );
}

/** How many devices ran each release after each push result or probation outcome (from the history). */
function VersionsChart({ history }: { history: HistoryEntry[] }): preact.JSX.Element {
  const config = useMemo((): ChartConfiguration => {
    const running = new Map<string, string>();
    const points: { at: string; counts: Map<string, number> }[] = [];
    for (const e of history) {
      if (e.result !== 'ok' && e.result !== 'committed' && e.result !== 'already installed') continue;
      running.set(e.client, e.version);
      const counts = new Map<string, number>();
      for (const v of running.values()) counts.set(v, (counts.get(v) ?? 0) + 1);
      points.push({ at: e.at, counts });
    }
    const versions = [...new Set(points.flatMap((p) => [...p.counts.keys()]))];
    return {
      type: 'line',
      data: {
        labels: points.map((p) => new Date(p.at).toLocaleString()),
        datasets: versions.map((v, i) => ({ label: v, data: points.map((p) => p.counts.get(v) ?? 0), borderColor: PALETTE[i % PALETTE.length], backgroundColor: PALETTE[i % PALETTE.length], stepped: true })),
      },
      options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: 'devices' } } } },
    };
  }, [history]);
  if (history.length === 0) return <p>Nothing pushed yet.</p>;
  return <ChartView config={config} label="Devices per release over time" />;
}

function DevicePage({ id, version }: { id: string; version: number }): preact.JSX.Element {
  const { data: devices } = useResource<Device[]>('devices', version, []);
  // This device's own (the fleet's newest would leave out a quiet device's).
  const { data: history } = useResource<HistoryEntry[]>(`history?device=${id}`, version, []);
  const { data: jobs } = useResource<Job[]>(`jobs?target=${id}`, version, []);
  const d = devices.find((x) => x.id === id);
  if (!d) return <section><h2>Device {short(id)}</h2><p>Not known (yet).</p></section>;
  return (
    <section aria-labelledby="device-h">
      <h2 id="device-h">Device {short(d.id)} {d.inventory.hostname ? `(${d.inventory.hostname})` : ''}</h2>
      <dl class="facts">
        <dt>ID</dt><dd>{d.id}</dd>
        <dt>State</dt><dd>{d.online ? 'online' : 'offline'}, last seen {ago(d.lastSeen)}</dd>
        <dt>Release</dt><dd>{d.release} ({d.product} {d.productName})</dd>
        <dt>Update</dt><dd>{d.updateState} ({d.updateResult})</dd>
        <dt>Address</dt><dd>{d.address}{d.node ? ` via node ${d.node}` : ''}</dd>
        <dt>Groups</dt><dd>{d.tags.join(', ') || '-'}</dd>
        <dt>Key</dt><dd>{d.fingerprint ?? '-'}</dd>
        {Object.entries(d.inventory).map(([k, v]) => [<dt key={`k${k}`}>{k}</dt>, <dd key={`v${k}`}>{String(v)}</dd>])}
      </dl>
      <h3>History</h3>
      <ul class="log">{history.filter((h) => h.client === d.id).reverse().map((h, i) => <li key={i}>{h.at} — {h.module} {h.version}: {h.result}{h.result === 'ok' ? '' : ` (${h.message})`}</li>)}</ul>
      <h3>Jobs and results</h3>
      <ul class="log">{jobs.filter((j) => j.device === d.id).reverse().map((j) => <li key={j.id}>job {j.id} {j.kind}: {j.state}{j.result ? ` — ${j.result}` : ''}{j.message ? `: ${j.message}` : ''}</li>)}</ul>
    </section>
  );
}

function Enrollment({ version, refresh }: { version: number; refresh: () => void }): preact.JSX.Element {
  const { data: requests, error } = useResource<Request[]>('requests', version, []);
  const [said, setSaid] = useState<string>();
  const act = async (id: string, action: 'approve' | 'reject' | 'revoke'): Promise<void> => {
    try {
      const e = await decide(id, action);
      setSaid(e.output.join(' ') || e.errors.join(' '));
    } catch (err) {
      setSaid((err as Error).message);
    }
    refresh();
  };
  return (
    <section aria-labelledby="enroll-h">
      <h2 id="enroll-h">Enrollment</h2>
      {error && <p role="alert" class="error">{error}</p>}
      {said && <p role="status">{said}</p>}
      {requests.length === 0 ? <p>No devices waiting, rejected or revoked.</p> : (
        <div class="scroll">
          <table>
            <thead><tr><th>ID</th><th>State</th><th>Address</th><th>Key fingerprint</th><th>Device</th><th>Asked</th><th>Decide</th></tr></thead>
            <tbody>
              {requests.map((r) => (
                <tr key={r.id} data-request={r.id}>
                  <td>{short(r.id)}</td><td>{r.state}</td><td>{r.address}</td><td class="mono">{r.fingerprint}</td>
                  <td>{[r.inventory.hostname, r.inventory.os, r.inventory.arch].filter(Boolean).join(', ') || '-'}</td><td>{ago(r.requestedAt)}</td>
                  <td class="actions">
                    {r.state !== 'revoked' && <button type="button" onClick={() => void act(r.id, 'approve')} aria-label={`Approve ${short(r.id)}`}>Approve</button>}
                    {r.state === 'pending' && <button type="button" onClick={() => void act(r.id, 'reject')} aria-label={`Reject ${short(r.id)}`}>Reject</button>}
                    {r.state !== 'revoked' && <button type="button" class="danger" onClick={() => void act(r.id, 'revoke')} aria-label={`Revoke ${short(r.id)}`}>Revoke</button>}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function Releases({ version, refresh, progress, results }: { version: number; refresh: () => void; progress: Progress[]; results: PushResult[] }): preact.JSX.Element {
  const { data: releases, error } = useResource<ReleaseSummary[]>('releases', version, []);
  const [file, setFile] = useState<File>();
  const [to, setTo] = useState('all');
  const [said, setSaid] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);
  /** The release whose Remove was clicked once: a second click removes it. */
  const [removing, setRemoving] = useState<string>();
  const remove = async (r: ReleaseSummary): Promise<void> => {
    if (removing !== r.sha256) { setRemoving(r.sha256); return; }
    setRemoving(undefined);
    try {
      const env = await command(['remove-release', r.sha256]);
      setSaid([...env.output, ...env.errors]);
    } catch (err) {
      setSaid([(err as Error).message]);
    }
    refresh();
  };
  const push = async (e: Event): Promise<void> => {
    e.preventDefault();
    if (!file) return;
    setBusy(true);
    setSaid([`uploading ${file.name}…`]);
    try {
      const up = await upload(file);
      setSaid([`pushing ${file.name} to ${to}…`]);
      const env = await command(['push', up.file, ...(to.trim() === '' || to === 'all' ? [] : ['--to', to.trim()])]);
      setSaid([...env.output, ...env.errors]);
    } catch (err) {
      setSaid([(err as Error).message]);
    }
    setBusy(false);
    refresh();
  };
  return (
    <section aria-labelledby="rel-h">
      <h2 id="rel-h">Releases and pushes</h2>
      <form class="card" onSubmit={(e) => void push(e)}>
        <h3>Push a module</h3>
        <label>Module file <input type="file" accept=".mjs,.js" onChange={(e) => setFile((e.target as HTMLInputElement).files?.[0])} required /></label>
        <label>To <input value={to} onInput={(e) => setTo((e.target as HTMLInputElement).value)} placeholder="all, a group, device ids" /></label>
        <button type="submit" disabled={busy || !file}>Sign and push</button>
        {said.length > 0 && <pre role="status" class="said">{said.join('\n')}</pre>}
      </form>
      <LivePush progress={progress} results={results} />
      {error && <p role="alert" class="error">{error}</p>}
      <h3>Pushed</h3>
      {releases.length === 0 ? <p>Nothing pushed yet.</p> : (
        <div class="scroll">
          <table>
            <thead><tr><th>Module</th><th>Version</th><th>Size</th><th>Signed</th><th>For</th><th>SHA-256</th><th>First pushed</th><th>Last pushed</th><th>Installed on</th><th>Failures</th><th>Kept</th></tr></thead>
            <tbody>{releases.map((r) => (
              <tr key={`${r.sha256}${r.version}`} data-release={r.version}>
                <td>{r.module}</td><td>{r.version}</td><td>{r.size === undefined ? '-' : mib(r.size)}</td><td>{r.signed ?? '-'}</td>
                <td>{r.for ? Object.entries(r.for).map(([k, v]) => `${k} ${String(v)}`).join(', ') : 'any device'}</td>
                <td class="mono">{r.sha256.slice(0, 16)}…</td><td>{r.firstPushed}</td><td>{r.lastPushed}</td><td>{r.installedOn}</td><td>{r.failures}</td>
                <td>{r.size === undefined ? 'removed' : (
                  <button type="button" class={removing === r.sha256 ? 'danger' : undefined} onClick={() => void remove(r)}
                    aria-label={`${removing === r.sha256 ? 'Confirm: remove' : 'Remove'} ${r.module} ${r.version}`}>
                    {removing === r.sha256 ? 'Remove for good?' : 'Remove'}
                  </button>
                )}</td>
              </tr>
            ))}</tbody>
          </table>
        </div>
      )}
    </section>
  );
}

export interface PushResult { readonly id: string; readonly module: string; readonly release: string; readonly ok: boolean; readonly result: string; readonly message: string; readonly active?: string }

/** Each device's progress with its rate (from the bytes between two updates), and the results. */
function LivePush({ progress, results }: { progress: Progress[]; results: PushResult[] }): preact.JSX.Element | null {
  const [rates, setRates] = useState<Map<string, { bytes: number; at: number; rate: number }>>(new Map());
  useEffect(() => {
    const now = Date.now();
    setRates((old) => new Map(progress.map((p) => {
      const was = old.get(p.id);
      const rate = was && now > was.at ? ((p.bytes - was.bytes) * 1000) / (now - was.at) : 0;
      return [p.id, { bytes: p.bytes, at: now, rate: Math.max(0, rate) }];
    })));
  }, [progress]);
  // The fleet's total rate over the last minute of progress updates (two a second).
  const [samples, setSamples] = useState<number[]>([]);
  useEffect(() => {
    if (progress.length === 0) return;
    setSamples((old) => [...old, [...rates.values()].reduce((sum, r) => sum + r.rate, 0) / 1024 / 1024].slice(-120));
  }, [rates]);
  const rateConfig = useMemo((): ChartConfiguration => ({
    type: 'line',
    data: { labels: samples.map((_, i) => `${((i - samples.length + 1) / 2).toFixed(1)} s`), datasets: [{ label: 'MiB/s, all devices', data: samples, borderColor: PALETTE[0], backgroundColor: PALETTE[0], pointRadius: 0 }] },
    options: { scales: { y: { beginAtZero: true, title: { display: true, text: 'MiB/s' } } } },
  }), [samples]);
  if (progress.length === 0 && results.length === 0) return null;
  return (
    <div class="card" aria-live="polite">
      <h3>Push in progress</h3>
      {samples.length > 1 && <ChartView config={rateConfig} label="Transfer rate of the push, all devices together" />}
      {progress.map((p) => {
        const pct = p.size === 0 ? 100 : Math.floor((100 * p.bytes) / p.size);
        return (
          <div class="progress" key={p.id} data-progress={p.id}>
            <span>{short(p.id)} {p.module} {p.release}</span>
            <progress max={100} value={pct} aria-label={`${short(p.id)} ${pct}%`} />
            <span>{pct}% of {mib(p.size)}, {mib(rates.get(p.id)?.rate ?? 0)}/s</span>
          </div>
        );
      })}
      <ul class="log">{results.map((r, i) => <li key={i} data-result={r.id} class={r.ok ? '' : 'error'}>{short(r.id)} {r.module} {r.release}: {r.ok ? `done, 100%, now ${r.active ?? r.release}` : `${r.result}: ${r.message}`}</li>)}</ul>
    </div>
  );
}

const STEPS: Step[] = ['committed', 'already', 'trial', 'sending', 'waiting', 'failed', 'rolled-back'];

/** The devices of each stage, by where they stand (a stage's devices include the earlier stages'). */
function stageConfig(c: Campaign): ChartConfiguration {
  let upTo = 0;
  const bounds = c.spec.stages.map((s) => (upTo = Math.min(c.members.length, Math.max(upTo, 'count' in s ? s.count : Math.ceil((s.percent * c.members.length) / 100)))));
  const labels = bounds.map((_, i) => `stage ${i + 1}`);
  return {
    type: 'bar',
    data: {
      labels,
      datasets: STEPS.map((step, i) => ({
        label: step, backgroundColor: PALETTE[i % PALETTE.length],
        data: bounds.map((end, s) => c.members.slice(s === 0 ? 0 : bounds[s - 1], end).filter((id) => c.devices[id]?.step === step).length),
      })),
    },
    options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: 'devices' } } } },
  };
}

function Rollouts({ version, refresh }: { version: number; refresh: () => void }): preact.JSX.Element {
  const { data: campaigns, error } = useResource<Campaign[]>('rollouts', version, []);
  const [form, setForm] = useState({ release: 'latest', to: 'all', stages: '1,10%,50%,100%', success: '95%', failures: '10%', window: '' });
  const [said, setSaid] = useState<string>();
  const [file, setFile] = useState<File>();
  const run = async (words: string[]): Promise<void> => {
    try {
      const e = await command(words);
      setSaid([...e.output, ...e.errors].join('\n'));
    } catch (err) {
      setSaid((err as Error).message);
    }
    refresh();
  };
  const field = (key: keyof typeof form, label: string, hint: string): preact.JSX.Element => (
    <label>{label} <input value={form[key]} placeholder={hint} onInput={(e) => setForm({ ...form, [key]: (e.target as HTMLInputElement).value })} /></label>
  );
  const start = async (e: Event): Promise<void> => {
    e.preventDefault();
    // A new module goes up first (the API sends only what was uploaded to it), then in stages.
    let release = form.release;
    if (file) {
      try {
        release = (await upload(file)).file;
      } catch (err) {
        setSaid((err as Error).message);
        return;
      }
    }
    void run(['rollout', 'start', release, '--to', form.to, '--stages', form.stages, '--success', form.success, '--max-failures', form.failures, ...(form.window ? ['--window', form.window] : [])]);
  };
  return (
    <section aria-labelledby="ro-h">
      <h2 id="ro-h">Rollout campaigns</h2>
      <form class="card" onSubmit={(e) => void start(e)}>
        <h3>Start a campaign</h3>
        {field('release', 'Release', 'latest, a name, or X.Y.Z')}
        <label>or a new module <input type="file" accept=".mjs,.js" onChange={(e) => setFile((e.target as HTMLInputElement).files?.[0])} /></label>
        {field('to', 'To', 'all or a group')}
        {field('stages', 'Stages', '1,10%,50%,100%')}
        {field('success', 'Success before the next stage', '95%')}
        {field('failures', 'Pause beyond failures', '10% or a count')}
        {field('window', 'Window (server time)', '22:00-04:00, empty: any time')}
        <button type="submit">Start</button>
      </form>
      {said && <pre role="status" class="said">{said}</pre>}
      {error && <p role="alert" class="error">{error}</p>}
      {campaigns.length === 0 && <p>No campaigns yet.</p>}
      {[...campaigns].reverse().map((c) => (
        <article class="card" key={c.id} data-campaign={c.id} aria-labelledby={`c${c.id}`}>
          <h3 id={`c${c.id}`}>Rollout {c.id}: {c.spec.release.name} {c.spec.release.version} to {c.members.length} device(s) ({c.spec.target})</h3>
          <p><strong class={`state ${c.state}`}>{c.state}</strong>{c.reason ? ` — ${c.reason}` : ''}; stage {c.stage + 1} of {c.spec.stages.length}, {c.reached} devices reached;
            {' '}{c.counts.committed} committed, {c.counts.already} already had it, {c.counts.trial} on probation, {c.counts.failed + c.counts['rolled-back']} failed or rolled back</p>
          <div class="actions">
            {c.state === 'running' && <button type="button" onClick={() => void run(['rollout', 'pause', String(c.id)])}>Pause</button>}
            {c.state === 'paused' && <button type="button" onClick={() => void run(['rollout', 'resume', String(c.id)])}>Resume</button>}
            {(c.state === 'running' || c.state === 'paused') && <button type="button" class="danger" onClick={() => void run(['rollout', 'cancel', String(c.id)])}>Cancel</button>}
          </div>
          <ChartView config={stageConfig(c)} label={`Rollout ${c.id}: devices per stage by step`} />
          <details>
            <summary>Devices</summary>
            <ul class="log">{c.members.map((id) => <li key={id}>{short(id)}: {c.devices[id]?.step}{c.devices[id]?.detail ? ` — ${c.devices[id]!.detail}` : ''}</li>)}</ul>
          </details>
        </article>
      ))}
    </section>
  );
}

function App(): preact.JSX.Element {
  const [token, setToken] = useState(savedToken());
  const [page, setPage] = useState<Page>(pageOf(location.hash));
  const [version, setVersion] = useState(0);
  const [live, setLive] = useState(false);
  const [progress, setProgress] = useState<Progress[]>([]);
  const [results, setResults] = useState<PushResult[]>([]);
  const refresh = useCallback(() => setVersion((v) => v + 1), []);
  useEffect(() => {
    const onHash = (): void => setPage(pageOf(location.hash));
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);
  useEffect(() => {
    if (!token) return undefined;
    // Bursts of events (a fleet registering) redraw once.
    let pending: number | undefined;
    const soon = (): void => { pending ??= window.setTimeout(() => { pending = undefined; refresh(); }, 200); };
    return listen((event, data) => {
      if (event === 'progress') { setProgress(data as Progress[]); return; }
      if (event === 'push') {
        const r = data as PushResult;
        setResults((old) => [...old.filter((x) => x.id !== r.id || x.release !== r.release), r].slice(-50));
        setProgress((old) => old.filter((p) => p.id !== r.id));
      }
      soon();
    }, setLive);
  }, [token]);
  if (!token) return <Login onToken={(t) => { setToken(t); refresh(); }} />;
  const nav: [Page['name'], string][] = [['fleet', 'Fleet'], ['enrollment', 'Enrollment'], ['releases', 'Releases'], ['rollouts', 'Rollouts']];
  return (
    <>
      <header>
        <h1>nxt fleet</h1>
        <nav aria-label="Pages">
          {nav.map(([name, label]) => <a key={name} href={`#/${name}`} aria-current={page.name === name ? 'page' : undefined}>{label}</a>)}
        </nav>
        <span class={live ? 'live on' : 'live'} role="status">{live ? 'live' : 'reconnecting…'}</span>
        <button type="button" class="link" onClick={() => { saveToken(undefined); setToken(undefined); }}>Sign out</button>
      </header>
      <main>
        {page.name === 'fleet' && <Fleet version={version} />}
        {page.name === 'device' && <DevicePage id={page.id} version={version} />}
        {page.name === 'enrollment' && <Enrollment version={version} refresh={refresh} />}
        {page.name === 'releases' && <Releases version={version} refresh={refresh} progress={progress} results={results} />}
        {page.name === 'rollouts' && <Rollouts version={version} refresh={refresh} />}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
