/** What every phase of the benchmark needs to know about the run. */
export interface BenchContext {
  workDir: string;
  /** Upstream URL of the benchmark repository (`http://127.0.0.1:PORT/bench/repo.git`). */
  upstreamUrl: string;
  /** `127.0.0.1:PORT`, for GITMIRROR_HTTP_HOSTS. */
  upstreamHost: string;
  /** The sidecar's id of the repository: `{host}/bench/repo`. */
  repoId: string;
  /** Samples per figure; each figure is their median. */
  runs: number;
  /** Concurrent clients of the concurrency test. */
  concurrency: number;
  /** Bound for any single wait (a restore, a clone); generous, only to fail a hung run. */
  timeoutMs: number;
  log(line: string): void;
  /**
   * NODE_COMPILE_CACHE for every sidecar process, filled before the first one starts, as the
   * image's is at build time: a new pod never compiles our modules, so neither does the bench.
   */
  compileCache: string;
  /** Node flags for a sidecar process (CPU profile per process when `--profile` is on). */
  sidecarNodeArgs(label: string): string[];
}
