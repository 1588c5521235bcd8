import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { silentLogger } from '../../../core/log.ts';
import type { InformerLike } from '../../src/kube/api.ts';
import { InformerSet, ResilientInformer } from '../../src/runtime/informer.ts';
import { eventually } from '../fakes/eventually.ts';

interface Obj {
  metadata: { name: string; namespace: string };
}

/** Behaves like client-node's ListWatch: start() resolves even when the list failed. */
class ScriptedInformer implements InformerLike<Obj> {
  readonly objects: Obj[] = [];
  starts = 0;
  /** Outcome of each start(): true lists fine, false reports an error. */
  readonly script: boolean[] = [];
  readonly #cbs = new Map<string, ((x: never) => void)[]>();

  on(verb: string, cb: (x: never) => void): void {
    this.#cbs.set(verb, [...(this.#cbs.get(verb) ?? []), cb]);
  }

  emit(verb: string, value: unknown): void {
    for (const cb of this.#cbs.get(verb) ?? []) cb(value as never);
  }

  async start(): Promise<void> {
    this.starts++;
    if (this.script.shift() === false) this.emit('error', new Error('list failed: 500'));
  }

  async stop(): Promise<void> {}

  get(name: string, namespace?: string): Obj | undefined {
    return this.objects.find((o) => o.metadata.name === name && o.metadata.namespace === namespace);
  }

  list(namespace?: string): readonly Obj[] {
    return this.objects.filter((o) => namespace === undefined || o.metadata.namespace === namespace);
  }
}

const fast = { baseMs: 5, maxMs: 20 };

function wrap(inner: ScriptedInformer, resyncMs = 60_000) {
  return new ResilientInformer(inner, { name: 't', logger: silentLogger(), resyncMs, restartBackoff: fast });
}

describe('ResilientInformer', () => {
  test('is synced only after a list succeeded, restarting with backoff until it does', async () => {
    const inner = new ScriptedInformer();
    inner.script.push(false, false, true);
    const informer = wrap(inner);
    await informer.start();
    assert.equal(informer.hasSynced(), false);
    await eventually(() => informer.hasSynced(), 'a successful list');
    assert.equal(inner.starts, 3);
    await informer.stop();
  });

  test('whenSynced resolves once a list has succeeded, not before', async () => {
    const inner = new ScriptedInformer();
    inner.script.push(false, true);
    const informer = wrap(inner);
    let synced = false;
    const waiting = informer.whenSynced().then(() => {
      synced = true;
    });
    await informer.start();
    assert.equal(synced, false);
    await waiting;
    assert.equal(inner.starts, 2);
    await informer.whenSynced();
    await informer.stop();
  });

  test('restarts after a watch error that client-node gives up on', async () => {
    const inner = new ScriptedInformer();
    const informer = wrap(inner);
    await informer.start();
    inner.emit('error', new Error('socket hang up'));
    await eventually(() => inner.starts === 2, 'a restart');
    await informer.stop();
    inner.emit('error', new Error('after stop'));
    await sleep(40);
    assert.equal(inner.starts, 2, 'a stopped informer stays stopped');
  });

  test('hands every change and, on resync, every cached object to the handlers', async () => {
    const inner = new ScriptedInformer();
    const a = { metadata: { name: 'a', namespace: 'ns' } };
    inner.objects.push(a);
    const informer = wrap(inner, 30);
    const seen: string[] = [];
    informer.onChange((o) => seen.push(o.metadata.name));
    await informer.start();
    inner.emit('add', { metadata: { name: 'b', namespace: 'ns' } });
    inner.emit('delete', a);
    await eventually(() => seen.length >= 3, 'a resync');
    await informer.stop();
    assert.deepEqual(seen.slice(0, 3), ['b', 'a', 'a']);
  });

  test('an InformerSet serves each namespace from its own informer', async () => {
    const one = new ScriptedInformer();
    const two = new ScriptedInformer();
    one.objects.push({ metadata: { name: 'x', namespace: 'one' } });
    two.objects.push({ metadata: { name: 'y', namespace: 'two' } });
    const set = new InformerSet(
      new Map([
        ['one', wrap(one)],
        ['two', wrap(two)],
      ]),
    );
    assert.equal(set.get('one', 'x')?.metadata.name, 'x');
    assert.equal(set.get('two', 'x'), undefined);
    assert.equal(set.get('three', 'x'), undefined);
    assert.deepEqual(
      set
        .list()
        .map((o) => o.metadata.name)
        .sort(),
      ['x', 'y'],
    );
    assert.equal(set.hasSynced(), false);
    await Promise.all(set.all.map((i) => i.start()));
    assert.equal(set.hasSynced(), true);
    await Promise.all(set.all.map((i) => i.stop()));
  });
});
