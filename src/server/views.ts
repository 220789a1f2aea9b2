/**
 * The JSON shapes the API returns and `--json` prints, declared once. No imports: the dashboard
 * (web/, compiled for the browser) takes its types from here too.
 */

/** What a device says about itself when it asks to enroll and when it registers. */
export interface Inventory {
  readonly hostname?: string;
  readonly os?: string;
  readonly arch?: string;
  readonly cpus?: number;
  readonly memoryBytes?: number;
  readonly diskFreeBytes?: number;
  /** What kind of device, which channel it follows, its agent's version (compatibility). */
  readonly type?: string;
  readonly channel?: string;
  readonly agent?: string;
  /** Wire features beyond protocol version 1 its agent takes, space-separated (`pieces`). */
  readonly features?: string;
}

/** A device (`clients --json`, GET /api/v1/devices). */
export interface DeviceView {
  readonly id: string;
  readonly address: string;
  readonly online: boolean;
  readonly release: string;
  readonly product: string;
  readonly productName: string;
  readonly lastSeen: string;
  readonly tags: readonly string[];
  readonly updateState: string;
  readonly updateResult: string;
  readonly type?: string;
  readonly channel?: string;
  readonly inventory: Inventory;
  readonly fingerprint?: string;
  /** The node that holds it, when several nodes serve the fleet. */
  readonly node?: string;
}

/** A device waiting for approval, or turned away (`requests --json`, GET /api/v1/requests). */
export interface RequestView {
  readonly id: string;
  readonly state: 'pending' | 'rejected' | 'revoked';
  readonly address: string;
  readonly fingerprint: string;
  readonly inventory: Inventory;
  readonly requestedAt: string;
}
