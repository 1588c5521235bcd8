/**
 * A queue served round-robin by key (a mirror): each key's items in the order they came, and
 * the keys in turn, so a mirror with a hundred queued fetches delays another mirror's one
 * fetch by at most one turn. Nothing starves.
 */
export class FairQueue<T> {
  private readonly byKey = new Map<string, T[]>();
  /** Keys with items, in the order they are served next. */
  private readonly turns: string[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  push(key: string, item: T): void {
    const items = this.byKey.get(key);
    if (items) items.push(item);
    else {
      this.byKey.set(key, [item]);
      this.turns.push(key);
    }
    this.count++;
  }

  /** The next item: the oldest of the key whose turn it is; that key goes to the back. */
  shift(): T | undefined {
    const key = this.turns.shift();
    if (key === undefined) return undefined;
    const items = this.byKey.get(key)!;
    const item = items.shift()!;
    if (items.length > 0) this.turns.push(key);
    else this.byKey.delete(key);
    this.count--;
    return item;
  }

  /** Takes an item out (its waiter gave up); returns whether it was queued. */
  remove(key: string, item: T): boolean {
    const items = this.byKey.get(key);
    const index = items?.indexOf(item) ?? -1;
    if (!items || index < 0) return false;
    items.splice(index, 1);
    if (items.length === 0) {
      this.byKey.delete(key);
      this.turns.splice(this.turns.indexOf(key), 1);
    }
    this.count--;
    return true;
  }
}
