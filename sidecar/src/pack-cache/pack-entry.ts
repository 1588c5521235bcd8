import { EventEmitter } from 'node:events';

export type EntryState = 'generating' | 'complete' | 'failed';

/** How a client came to its pack: from disk, by starting the generation, or by joining one. */
export type LeaseRole = 'hit' | 'miss' | 'joined';

/**
 * One cached pack: a file that a generation writes and readers follow as it grows. The
 * entry is the only writer of its state: `grew`, `completed` and `failed` are the
 * transitions, and a reader learns of each through `changed()`. `bytes` only ever counts
 * what pack-objects has written, and only a `complete` entry is whole.
 */
export class PackEntry {
  readonly key: string;
  readonly repoId: string;
  readonly path: string;
  readonly createdAt: number;
  private currentState: EntryState = 'generating';
  private written = 0;
  private failure?: string;
  completedAt?: number;
  lastUsedAt: number;
  /** Leases not yet released. */
  readers = 0;
  /**
   * Out of the index: no new reader gets it, and its file is deleted once the last reader
   * leaves (evicted, expired, its mirror removed, or over the budget when it completed).
   */
  retired = false;
  /** Completed over the budget: retire it then instead of keeping it. */
  dropWhenComplete = false;
  private readonly events = new EventEmitter();
  private readonly resized: (deltaBytes: number) => void;

  constructor(options: {
    key: string;
    repoId: string;
    path: string;
    now: number;
    /** Told how much `bytes` changed by, so the cache keeps its total without adding up entries. */
    resized?: (deltaBytes: number) => void;
  }) {
    this.key = options.key;
    this.repoId = options.repoId;
    this.path = options.path;
    this.createdAt = options.now;
    this.lastUsedAt = options.now;
    this.resized = options.resized ?? (() => {});
    this.events.setMaxListeners(0);
  }

  get state(): EntryState {
    return this.currentState;
  }

  get bytes(): number {
    return this.written;
  }

  get error(): string | undefined {
    return this.failure;
  }

  /** Whether it completed at least `ttlMs` ago: no longer served, read or not. */
  expired(now: number, ttlMs: number): boolean {
    return this.completedAt !== undefined && now - this.completedAt >= ttlMs;
  }

  /** Completed and read by nobody: the only kind of entry that may be evicted. */
  get idle(): boolean {
    return this.currentState === 'complete' && this.readers === 0;
  }

  grew(bytes: number): void {
    if (this.currentState !== 'generating' || bytes <= this.written) return;
    this.resize(bytes);
    this.events.emit('change');
  }

  completed(bytes: number, now: number): void {
    if (this.currentState !== 'generating') return;
    this.resize(bytes);
    this.currentState = 'complete';
    this.completedAt = now;
    this.events.emit('change');
  }

  failed(message: string): void {
    if (this.currentState !== 'generating') return;
    this.currentState = 'failed';
    this.failure = message;
    this.events.emit('change');
  }

  private resize(bytes: number): void {
    const delta = bytes - this.written;
    this.written = bytes;
    if (delta !== 0) this.resized(delta);
  }

  /** pack-objects' progress output, for readers that asked for progress. */
  progress(text: string): void {
    this.events.emit('progress', text);
  }

  /** Resolves at the entry's next transition (growth, completion or failure). */
  changed(): Promise<void> {
    if (this.currentState !== 'generating') return Promise.resolve();
    return new Promise((resolve) => this.events.once('change', resolve));
  }

  onProgress(listener: (text: string) => void): () => void {
    this.events.on('progress', listener);
    return () => this.events.off('progress', listener);
  }
}

/**
 * A reader's hold on an entry: while it is held the file stays on disk and a generation in
 * progress keeps running. Released exactly once, with the bytes this reader passed on.
 */
export class PackLease {
  readonly role: LeaseRole;
  private readonly entry: PackEntry;
  private readonly onRelease: (servedBytes: number) => void;
  private released = false;

  constructor(entry: PackEntry, role: LeaseRole, onRelease: (servedBytes: number) => void) {
    this.entry = entry;
    this.role = role;
    this.onRelease = onRelease;
  }

  get path(): string {
    return this.entry.path;
  }

  get key(): string {
    return this.entry.key;
  }

  /** Bytes of the pack on disk now; all of it once `state` is `complete`. */
  get bytes(): number {
    return this.entry.bytes;
  }

  get state(): EntryState {
    return this.entry.state;
  }

  get error(): string | undefined {
    return this.entry.error;
  }

  changed(): Promise<void> {
    return this.entry.changed();
  }

  onProgress(listener: (text: string) => void): () => void {
    return this.entry.onProgress(listener);
  }

  release(servedBytes = 0): void {
    if (this.released) return;
    this.released = true;
    this.onRelease(servedBytes);
  }
}
