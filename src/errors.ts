/**
 * One base error with a machine-readable `code`. Callers branch on the code, never on the
 * wording; the CLI maps codes to exit codes in one place (src/cli/exit-codes.ts).
 */
export class NxtError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NxtError';
    this.code = code;
  }
}

/** Thrown only by the wire codec: a datagram that is not a well-formed nxt message. */
export class DecodeError extends NxtError {
  constructor(code: string, message: string) {
    super(code, message);
    this.name = 'DecodeError';
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
