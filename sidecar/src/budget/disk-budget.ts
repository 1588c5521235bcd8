import { formatBytes } from '../../../core/byte-size.ts';
import { GitMirrorError, isGitMirrorError } from '../errors/gitmirror-error.ts';
import type { ByteHolder, EvictionTier } from './byte-holder.ts';
import { type HeldCandidate, planEviction } from './eviction-plan.ts';
import { filesystemFreeBytes } from './tree-usage.ts';

export interface DiskBudgetOptions {
  /** GITMIRROR_DATA_BUDGET. Without one, usage is still accounted and the filesystem's free space still guards writes. */
  limitBytes?: number;
  /** The data dir, whose filesystem's free space is the second limit (statfs). */
  dataDir: string;
  /** Free bytes on the data dir's filesystem; statfs unless a test says otherwise. */
  freeBytes?: (path: string) => Promise<number>;
  observer?: DiskBudgetObserver;
}

/** What the budget reports as it works; the sidecar maps it to logs and metrics. */
export interface DiskBudgetObserver {
  evicted(candidate: HeldCandidate, purpose: string): void;
  refused(shortfall: SpaceShortfall): void;
}

export interface SpaceRequest {
  bytes: number;
  /** What the space is for, as a person reads it: `restore of github.com/org/repo`. */
  purpose: string;
}

interface Admission extends SpaceRequest {
  /** What the write needs in all, when `bytes` is the growth of a reservation. */
  totalBytes?: number;
  /** False: fit in what is free now or refuse, evicting nothing. */
  evict?: boolean;
}

/** Why a write was refused, with every number a person needs to fix it. */
export interface SpaceShortfall {
  purpose: string;
  /** Bytes the write needs in all (for a write under way: what it has written and still needs). */
  neededBytes: number;
  /** Bytes that could not be found even after evicting everything evictable. */
  missingBytes: number;
  limitBytes?: number;
  usedBytes: number;
  reservedBytes: number;
  evictableBytes: number;
  /** Free bytes on the filesystem, when that was the tighter limit. */
  filesystemFreeBytes?: number;
  holders: HolderUsage[];
}

export interface HolderUsage {
  name: string;
  bytes: number;
}

export interface BudgetUsage {
  limitBytes?: number;
  /** What the holders hold. */
  usedBytes: number;
  /** Set aside for writes under way (restores, clones, fetches, repacks). */
  reservedBytes: number;
  holders: HolderUsage[];
  reservations: { purpose: string; bytes: number; writtenBytes: number }[];
  /** Writes refused since start. */
  refusals: number;
  /** Entries evicted since start, by holder and tier. */
  evicted: { holder: string; tier: EvictionTier; count: number; bytes: number }[];
}

/**
 * Space set aside for one write under way. The writer reports what it has written so far
 * (`wrote`), asks for more before it needs it (`grow`, which may evict or refuse) and
 * releases the rest when it is done: by then what it wrote belongs to a holder.
 */
export class Reservation {
  readonly purpose: string;
  #bytes: number;
  #written = 0;
  #released = false;
  readonly #budget: DiskBudget;

  constructor(budget: DiskBudget, purpose: string, bytes: number) {
    this.#budget = budget;
    this.purpose = purpose;
    this.#bytes = bytes;
  }

  get bytes(): number {
    return this.#released ? 0 : this.#bytes;
  }

  get writtenBytes(): number {
    return this.#written;
  }

  /** Bytes reserved but not yet on disk: what the filesystem must still have free. */
  get unwrittenBytes(): number {
    return Math.max(0, this.bytes - this.#written);
  }

  get released(): boolean {
    return this.#released;
  }

  wrote(bytes: number): void {
    this.#written = bytes;
  }

  /**
   * Grows the reservation to `bytes`, evicting if that makes it fit (unless `evict` is false);
   * throws INSUFFICIENT_STORAGE (naming the numbers) when it cannot.
   */
  async grow(bytes: number, options: { evict?: boolean } = {}): Promise<void> {
    if (this.#released || bytes <= this.#bytes) return;
    const request = {
      bytes: bytes - this.#bytes,
      totalBytes: bytes,
      purpose: this.purpose,
      evict: options.evict,
    };
    const outcome = await this.#budget.admit(request, () => {
      this.#bytes = Math.max(this.#bytes, bytes);
    });
    if (outcome) throw shortfallError(outcome);
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#budget.forget(this);
  }
}

/**
 * The sidecar's byte budget for its data dir. It adds up what every holder holds and what
 * writes under way have reserved; before a write it checks that the result fits both the
 * budget and the filesystem, evicting (expired and cache entries first, then the on-demand
 * mirrors idle the longest) when that makes it fit, and refusing before anything is written
 * when even that would not. Admissions run one at a time, so two writes never count the
 * same free bytes.
 */
export class DiskBudget {
  readonly limitBytes?: number;
  private readonly options: DiskBudgetOptions;
  private readonly holders: ByteHolder[] = [];
  private readonly reservations = new Set<Reservation>();
  private readonly evicted = new Map<string, BudgetUsage['evicted'][number]>();
  private refusals = 0;
  private turn: Promise<unknown> = Promise.resolve();

  constructor(options: DiskBudgetOptions) {
    this.options = options;
    this.limitBytes = options.limitBytes;
  }

  add(holder: ByteHolder): void {
    if (this.holders.some((h) => h.name === holder.name))
      throw new Error(`a byte holder named ${holder.name} is already accounted`);
    this.holders.push(holder);
  }

  usage(): BudgetUsage {
    const holders = this.holders.map((h) => ({ name: h.name, bytes: h.bytesHeld() }));
    const reservations = [...this.reservations].map((r) => ({
      purpose: r.purpose,
      bytes: r.bytes,
      writtenBytes: r.writtenBytes,
    }));
    return {
      limitBytes: this.limitBytes,
      usedBytes: holders.reduce((sum, h) => sum + h.bytes, 0),
      reservedBytes: reservations.reduce((sum, r) => sum + r.bytes, 0),
      holders,
      reservations,
      refusals: this.refusals,
      evicted: [...this.evicted.values()].map((e) => ({ ...e })),
    };
  }

  /**
   * A holder with a bound of its own (GITMIRROR_LFS_MAX_BYTES) that holds more: its entries go
   * in the budget's order (expired, then least recently used) until it fits or nothing more may
   * go, through the same eviction as a write's, so they are counted alike. In the budget's turn.
   */
  keepWithin(holder: ByteHolder, maxBytes: number): Promise<void> {
    const run = this.turn.then(async () => {
      const excess = holder.bytesHeld() - maxBytes;
      if (excess <= 0) return;
      const candidates = holder.evictionCandidates().map((c) => ({ ...c, holder: holder.name }));
      const evictable = candidates.reduce((sum, c) => sum + c.bytes, 0);
      const plan = planEviction(candidates, Math.min(excess, evictable));
      await this.evict(plan.evictions, `${holder.name} over its own bound of ${formatBytes(maxBytes)}`);
    });
    this.turn = run.catch(() => {});
    return run;
  }

  /** Sets space aside for a write, evicting if that makes it fit; or says why it cannot be. */
  async tryReserve(request: SpaceRequest): Promise<Reservation | SpaceShortfall> {
    const bytes = Math.max(0, Math.ceil(request.bytes));
    const reservation = new Reservation(this, request.purpose, bytes);
    const shortfall = await this.admit({ bytes, purpose: request.purpose }, () =>
      this.reservations.add(reservation),
    );
    return shortfall ?? reservation;
  }

  /** `tryReserve`, throwing INSUFFICIENT_STORAGE (naming the numbers) when the write cannot fit. */
  async reserve(request: SpaceRequest): Promise<Reservation> {
    const outcome = await this.tryReserve(request);
    if (outcome instanceof Reservation) return outcome;
    throw shortfallError(outcome);
  }

  /** @internal A reservation was released. */
  forget(reservation: Reservation): void {
    this.reservations.delete(reservation);
  }

  /**
   * @internal Makes room for `bytes` more and runs `commit` in the same turn, or returns the
   * shortfall and evicts nothing.
   */
  admit(request: Admission, commit?: () => void): Promise<SpaceShortfall | undefined> {
    const run = this.turn.then(() => this.admitNow(request, commit));
    this.turn = run.catch(() => {});
    return run;
  }

  private async admitNow(request: Admission, commit?: () => void): Promise<SpaceShortfall | undefined> {
    // Evictions can skip entries that became busy meanwhile: look again, a bounded number of times.
    for (let attempt = 0; attempt < 3; attempt++) {
      const need = await this.bytesToFree(request.bytes);
      if (need.bytes <= 0) {
        commit?.();
        return undefined;
      }
      const plan = planEviction(request.evict === false ? [] : this.candidates(), need.bytes);
      if (!plan.enough) return this.refuse(request, need, plan.evictableBytes);
      await this.evict(plan.evictions, request.purpose);
    }
    const need = await this.bytesToFree(request.bytes);
    if (need.bytes <= 0) {
      commit?.();
      return undefined;
    }
    return this.refuse(request, need, planEviction(this.candidates(), need.bytes).evictableBytes);
  }

  /** How many bytes must be freed before `bytes` more fit the budget and the filesystem. */
  private async bytesToFree(bytes: number): Promise<{ bytes: number; filesystemFreeBytes?: number }> {
    const { usedBytes, reservedBytes } = this.usage();
    const overBudget =
      this.limitBytes === undefined
        ? Number.NEGATIVE_INFINITY
        : usedBytes + reservedBytes + bytes - this.limitBytes;
    const free = await (this.options.freeBytes ?? filesystemFreeBytes)(this.options.dataDir);
    let unwritten = 0;
    for (const r of this.reservations) unwritten += r.unwrittenBytes;
    const overFilesystem = unwritten + bytes - free;
    if (overFilesystem > overBudget) return { bytes: overFilesystem, filesystemFreeBytes: free };
    return { bytes: overBudget };
  }

  private candidates(): HeldCandidate[] {
    return this.holders.flatMap((holder) =>
      holder.evictionCandidates().map((c) => ({ ...c, holder: holder.name })),
    );
  }

  /** Has each holder delete its part of `evictions`; counts what the holders say they removed. */
  private async evict(evictions: readonly HeldCandidate[], purpose: string): Promise<void> {
    for (const holder of this.holders) {
      const mine = new Map(evictions.filter((e) => e.holder === holder.name).map((e) => [e.key, e]));
      if (mine.size === 0) continue;
      for (const removed of await holder.evict([...mine.keys()])) {
        const planned = mine.get(removed.key);
        if (!planned) continue;
        const e = { ...planned, bytes: removed.bytes };
        const tally = this.evicted.get(`${e.holder}/${e.tier}`) ?? {
          holder: e.holder,
          tier: e.tier,
          count: 0,
          bytes: 0,
        };
        tally.count++;
        tally.bytes += e.bytes;
        this.evicted.set(`${e.holder}/${e.tier}`, tally);
        this.options.observer?.evicted(e, purpose);
      }
    }
  }

  private refuse(
    request: Admission,
    need: { bytes: number; filesystemFreeBytes?: number },
    evictableBytes: number,
  ): SpaceShortfall {
    const usage = this.usage();
    const shortfall: SpaceShortfall = {
      purpose: request.purpose,
      neededBytes: request.totalBytes ?? request.bytes,
      missingBytes: need.bytes - evictableBytes,
      limitBytes: this.limitBytes,
      usedBytes: usage.usedBytes,
      reservedBytes: usage.reservedBytes,
      evictableBytes,
      filesystemFreeBytes: need.filesystemFreeBytes,
      holders: usage.holders,
    };
    // A try without eviction is a question, not a refusal anyone must hear about.
    if (request.evict !== false) {
      this.refusals++;
      this.options.observer?.refused(shortfall);
    }
    return shortfall;
  }
}

/** `restore of x needs 1.2 GiB: the data budget is 1 GiB, 700 MiB held (mirrors 690 MiB, spool 10 MiB), ...` */
export function describeShortfall(s: SpaceShortfall): string {
  const held = s.holders
    .filter((h) => h.bytes > 0)
    .map((h) => `${h.name} ${formatBytes(h.bytes)}`)
    .join(', ');
  const limit =
    s.filesystemFreeBytes !== undefined
      ? `the data volume has ${formatBytes(s.filesystemFreeBytes)} free`
      : `the data budget is ${formatBytes(s.limitBytes ?? 0)}`;
  return (
    `${s.purpose} needs ${formatBytes(s.neededBytes)}: ${limit}, ` +
    `${formatBytes(s.usedBytes)} held${held ? ` (${held})` : ''}, ` +
    `${formatBytes(s.reservedBytes)} reserved for writes under way, ` +
    `${formatBytes(s.evictableBytes)} evictable; ${formatBytes(s.missingBytes)} missing`
  );
}

export function shortfallError(s: SpaceShortfall): GitMirrorError {
  return new GitMirrorError('INSUFFICIENT_STORAGE', describeShortfall(s), { cause: s });
}

/** The shortfall an INSUFFICIENT_STORAGE error from the budget carries, if it is one. */
export function shortfallOf(err: unknown): SpaceShortfall | undefined {
  if (!isGitMirrorError(err, 'INSUFFICIENT_STORAGE')) return undefined;
  const cause = err.cause as Partial<SpaceShortfall> | undefined;
  return typeof cause?.neededBytes === 'number' && typeof cause.purpose === 'string'
    ? (cause as SpaceShortfall)
    : undefined;
}
