/** What a start gate's process looks like to the runner, wherever it was forked (execa on this thread, or the spawner's worker). */
export interface GateResult {
  exitCode?: number | undefined;
  signal?: string | undefined;
  /** A spawn that failed: its errno code and message. */
  code?: string | undefined;
  cause?: unknown;
  shortMessage?: string | undefined;
}

export interface Gate extends PromiseLike<GateResult> {
  readonly pid?: number | undefined;
  readonly exitCode: number | null;
  readonly signalCode: NodeJS.Signals | null;
  readonly stdin: { readonly writable: boolean; end(data?: string): void };
  /** Whether the gate keeps the service's event loop alive: a waiting gate does not, a taken one does. */
  ref(): void;
  unref(): void;
}
