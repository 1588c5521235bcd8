import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isGitMirrorError } from '../../src/errors/gitmirror-error.ts';
import { type JobKind, JobScheduler } from '../../src/jobs/job-scheduler.ts';

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { open, opened };
}

function scheduler(concurrency = 4, cloneConcurrency = 2) {
  return new JobScheduler({ concurrency, cloneConcurrency });
}

describe('job scheduler', () => {
  it('runs jobs of one mirror one at a time, and different mirrors in parallel', async () => {
    const s = scheduler();
    const log: string[] = [];
    const g = gate();
    const job = (mirrorId: string, kind: JobKind, tag: string) =>
      s.submit({
        mirrorId,
        kind,
        run: async () => {
          log.push(`start ${tag}`);
          await g.opened;
          log.push(`end ${tag}`);
        },
      });
    const all = [job('a', 'fetch', 'a1'), job('a', 'repack', 'a2'), job('b', 'fetch', 'b1')];
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(log, ['start a1', 'start b1']);
    g.open();
    await Promise.all(all);
    assert.ok(log.indexOf('start a2') > log.indexOf('end a1'));
  });

  it('joins a duplicate queued job instead of queueing it twice', async () => {
    const s = scheduler();
    const g = gate();
    let runs = 0;
    const blocker = s.submit({ mirrorId: 'a', kind: 'snapshot', run: () => g.opened });
    const first = s.submit({ mirrorId: 'a', kind: 'fetch', run: async () => ++runs });
    const second = s.submit({ mirrorId: 'a', kind: 'fetch', run: async () => ++runs });
    assert.equal(s.queueDepth, 1);
    g.open();
    await blocker;
    assert.equal(await first, 1);
    assert.equal(await second, 1);
    assert.equal(runs, 1);
  });

  it('caps clones separately so fetches are not starved', async () => {
    const s = scheduler(3, 1);
    const g = gate();
    const running: string[] = [];
    const track = (id: string, kind: JobKind) =>
      s.submit({
        mirrorId: id,
        kind,
        run: async () => {
          running.push(id);
          await g.opened;
        },
      });
    const jobs = [track('c1', 'clone'), track('c2', 'restore'), track('f1', 'fetch')];
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(running.sort(), ['c1', 'f1']);
    g.open();
    await Promise.all(jobs);
    assert.equal(running.length, 3);
  });

  it('respects the global cap', async () => {
    const s = scheduler(2, 2);
    const g = gate();
    let active = 0;
    let peak = 0;
    const jobs = ['a', 'b', 'c', 'd'].map((id) =>
      s.submit({
        mirrorId: id,
        kind: 'fetch',
        run: async () => {
          peak = Math.max(peak, ++active);
          await g.opened;
          active--;
        },
      }),
    );
    await new Promise((r) => setTimeout(r, 10));
    g.open();
    await Promise.all(jobs);
    assert.equal(peak, 2);
  });

  it('stop rejects queued jobs and aborts running ones', async () => {
    const s = scheduler(1, 1);
    let aborted = false;
    const running = s.submit({
      mirrorId: 'a',
      kind: 'fetch',
      run: (signal) =>
        new Promise((_, reject) =>
          signal.addEventListener('abort', () => {
            aborted = true;
            reject(new Error('aborted'));
          }),
        ),
    });
    const queued = s.submit({ mirrorId: 'b', kind: 'fetch', run: async () => 1 });
    await new Promise((r) => setTimeout(r, 10));
    await s.stop(1000);
    assert.equal(aborted, true);
    await assert.rejects(running);
    await assert.rejects(queued, (err) => isGitMirrorError(err, 'SHUTTING_DOWN'));
    await assert.rejects(s.submit({ mirrorId: 'c', kind: 'fetch', run: async () => 1 }), (err) =>
      isGitMirrorError(err, 'SHUTTING_DOWN'),
    );
  });
});
