/**
 * Tells people when updates are not going out: a JSON webhook (node's fetch) and/or an email
 * (nodemailer, through the operator's SMTP server) for each alert. Alerts are queued and
 * delivered in the background, each retried with backoff and then logged as lost: a slow or dead
 * mail server never holds up a push.
 */
import nodemailer, { type Transporter } from 'nodemailer';
import { errorMessage } from '../errors.js';

export interface Alert {
  /** 'push-failed' | 'behind' | 'job-failed' */
  readonly event: string;
  readonly device: string;
  readonly reason: string;
  readonly detail: string;
  readonly release?: string;
  readonly at: string;
}

export interface NotifierOptions {
  readonly webhook?: string;
  /** smtp://host:port or smtps://… (user:password@ allowed) */
  readonly smtp?: string;
  readonly emailTo?: string;
  readonly emailFrom?: string;
  /** Delivery attempts per alert and channel; waits 1 s, 2 s, 4 s… between them. */
  readonly attempts?: number;
  readonly firstRetryMs?: number;
  readonly timeoutMs?: number;
  /** Where delivery problems go (the console prints them as warnings). */
  readonly log: (line: string) => void;
}

export class Notifier {
  private readonly mailer: Transporter | undefined;
  private pending = 0;
  /** Resolves when nothing is queued (tests, shutdown). */
  private idle: Promise<void> = Promise.resolve();
  private markIdle: () => void = () => undefined;

  constructor(private readonly options: NotifierOptions) {
    const timeout = options.timeoutMs ?? 5000;
    this.mailer = options.smtp && options.emailTo
      ? nodemailer.createTransport(options.smtp, { connectionTimeout: timeout, greetingTimeout: timeout, socketTimeout: timeout })
      : undefined;
  }

  get enabled(): boolean { return this.options.webhook !== undefined || this.mailer !== undefined; }

  /** Queue an alert on every configured channel; returns at once. */
  notify(alert: Alert): void {
    if (this.options.webhook) this.deliver('webhook', alert, () => this.postWebhook(this.options.webhook!, alert));
    if (this.mailer) this.deliver('email', alert, () => this.sendEmail(alert));
  }

  /** Resolves once every queued alert was delivered or given up on. */
  drained(): Promise<void> { return this.idle; }

  private deliver(channel: string, alert: Alert, attempt: () => Promise<void>): void {
    if (this.pending++ === 0) this.idle = new Promise((resolve) => { this.markIdle = resolve; });
    const attempts = this.options.attempts ?? 5;
    const run = async (): Promise<void> => {
      let delay = this.options.firstRetryMs ?? 1000;
      for (let i = 1; ; i++) {
        try {
          await attempt();
          return;
        } catch (err) {
          if (i >= attempts) {
            this.options.log(`${channel} alert about ${alert.device.slice(0, 12)} (${alert.event}) not delivered after ${attempts} attempts: ${errorMessage(err)}`);
            return;
          }
          await new Promise((r) => setTimeout(r, delay).unref());
          delay *= 2;
        }
      }
    };
    void run().finally(() => { if (--this.pending === 0) this.markIdle(); });
  }

  private async postWebhook(url: string, alert: Alert): Promise<void> {
    const res = await fetch(url, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(alert),
      signal: AbortSignal.timeout(this.options.timeoutMs ?? 5000),
    });
    if (!res.ok) throw new Error(`webhook answered ${res.status}`);
  }

  private async sendEmail(alert: Alert): Promise<void> {
    await this.mailer!.sendMail({
      from: this.options.emailFrom ?? 'nxt-server <nxt@localhost>',
      to: this.options.emailTo,
      subject: `nxt: ${describeEvent(alert.event)} on ${alert.device.slice(0, 12)}: ${alert.reason}`,
      text: [
        `${describeEvent(alert.event)} on device ${alert.device}`,
        `reason: ${alert.reason}`,
        alert.release ? `release: ${alert.release}` : undefined,
        `detail: ${alert.detail}`,
        `at: ${alert.at}`,
      ].filter((l) => l !== undefined).join('\n'),
    });
  }
}

function describeEvent(event: string): string {
  return event === 'push-failed' ? 'update failed' : event === 'behind' ? 'device behind the latest release'
    : event === 'job-failed' ? 'maintenance job failed' : event === 'rolled-back' ? 'update rolled back on the device' : event === 'rollout-paused' ? 'rollout campaign paused' : event;
}
