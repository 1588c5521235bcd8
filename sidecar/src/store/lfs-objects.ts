import type { Readable } from 'node:stream';
import { GitMirrorError, isGitMirrorError } from '../errors/gitmirror-error.ts';
import type { SnapshotStore } from './store.ts';

/** An LFS object as the store tier names it: sha256 of the content (64 hex digits) and size. */
export interface StoredObjectId {
  oid: string;
  size: number;
}

/** Objects known to be in the store; nothing here deletes them, so a hit stays true. */
const MAX_KNOWN = 100_000;
const HEAD_CONCURRENCY = 8;
const WRITE_CONCURRENCY = 2;

/** `lfs/{oid[0:2]}/{oid}`: an LFS object's key in the snapshot store (under its prefix). */
export function lfsObjectKey(oid: string): string {
  return `lfs/${oid.slice(0, 2)}/${oid}`;
}

/**
 * The fleet's tier of LFS objects: content-addressed keys in the snapshot store that every
 * replica shares. Any replica may write a key (the bytes are the same whoever writes them, and
 * a put is visible only once whole), none deletes one. The store is trusted for nothing: a
 * reader checks every copy against its oid and size while it streams (`Arrival`), and a copy
 * that fails is `distrust`ed here, so this replica goes to upstream for that oid until it has
 * written a fresh copy itself.
 */
export class StoredLfsObjects {
  readonly store: SnapshotStore;
  private readonly known = new Set<string>();
  private readonly distrusted = new Set<string>();
  private readonly heads = new Slots(HEAD_CONCURRENCY);
  private readonly writes = new Slots(WRITE_CONCURRENCY);

  constructor(store: SnapshotStore) {
    this.store = store;
  }

  /** Whether the store holds the object at its size (a HEAD, remembered once true). */
  async has(object: StoredObjectId): Promise<boolean> {
    if (this.distrusted.has(object.oid)) return false;
    if (this.known.has(object.oid)) return true;
    const info = await this.heads.run(() => this.store.head(lfsObjectKey(object.oid)));
    if (info?.sizeBytes !== object.size) return false;
    this.remember(object.oid);
    return true;
  }

  /** The stored bytes, unverified, or undefined when the store has none (or none this replica trusts). */
  async open(object: StoredObjectId): Promise<Readable | undefined> {
    if (this.distrusted.has(object.oid)) return undefined;
    try {
      return await this.store.get(lfsObjectKey(object.oid));
    } catch (err) {
      if (isGitMirrorError(err, 'SNAPSHOT_NOT_FOUND')) return undefined;
      throw err;
    }
  }

  /** A copy read from here failed verification: skip it until this replica writes a new one. */
  distrust(oid: string): void {
    this.distrusted.add(oid);
    this.known.delete(oid);
  }

  /** A read of the whole object verified: the store has it. */
  verified(oid: string): void {
    if (!this.distrusted.has(oid)) this.remember(oid);
  }

  /**
   * Uploads a verified object (a few at a time; the rest wait their turn). `open` gives its
   * bytes when the upload's turn comes, or undefined when there is nothing to upload any more.
   */
  async write(object: StoredObjectId, open: () => Readable | undefined): Promise<void> {
    await this.writes.run(async () => {
      const body = open();
      if (!body) return;
      const info = await this.store.put(lfsObjectKey(object.oid), body, {
        contentType: 'application/octet-stream',
      });
      if (info.sizeBytes !== object.size)
        throw new GitMirrorError(
          'SNAPSHOT_STORE_FAILED',
          `stored ${info.sizeBytes} of the ${object.size} bytes of LFS object ${object.oid}`,
        );
      this.distrusted.delete(object.oid);
      this.remember(object.oid);
    });
  }

  private remember(oid: string): void {
    if (this.known.size >= MAX_KNOWN) this.known.clear();
    this.known.add(oid);
  }
}

/** At most `limit` tasks at a time; the rest wait in order. */
class Slots {
  private readonly limit: number;
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(limit: number) {
    this.limit = limit;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active++;
    try {
      return await task();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}
