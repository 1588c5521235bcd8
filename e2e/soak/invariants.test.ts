import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { prng } from '../../sidecar/demo/synthetic-repo.ts';
import {
  classifyFailure,
  judgeBudget,
  judgeClones,
  judgeFaults,
  judgeFinal,
  judgeGrowth,
  judgeLag,
  judgeLoad,
  judgeOps,
} from './invariants.ts';
import { newRecord, type OpRecord, type ResourceSample, type SoakRecord } from './record.ts';
import { RefHistory } from './ref-history.ts';
import { planChaos } from './schedule.ts';
import { fetchUpperBoundMs } from './stats.ts';

/**
 * The judges on hand-made records: where each draws its lines, and for the invariants no
 * sabotaged build breaks (load-held, faults-recovered, the LFS files of clones-intact) the
 * proof that they can fail. That the others catch a real broken build is
 * sabotage.soak-test.ts's job.
 */

const START = 1_000_000;
const MIN = 60_000;

function record(overrides: Partial<SoakRecord> = {}): SoakRecord {
  return {
    ...newRecord(
      {
        minutes: 10,
        short: true,
        seed: 1,
        rate: 12,
        loadStart: START,
        loadEnd: START + 10 * MIN,
        startedAt: START - MIN,
        phases: {},
        machine: { cpus: 2, cpuModel: 'test', memGiB: 1, kernel: 'x', node: 'v24', git: '2.39' },
        loadAverage: { start: [0, 0, 0] },
        repos: [],
        lagBoundMs: 10_000,
        refCheckIntervalMs: 5000,
        fetchBoundMs: 5000,
        dataBudgetBytes: 1024,
        sabotage: [],
      },
      planChaos({ seed: 1, runMs: 10 * MIN }),
    ),
    ...overrides,
  };
}

function op(fields: Partial<OpRecord>): OpRecord {
  return {
    id: 0,
    kind: 'clone',
    repo: 'small',
    pod: 'p1',
    start: START,
    end: START + 1000,
    ok: true,
    ...fields,
  };
}

describe('the soak’s judges', () => {
  it('excuse a failure only when its pod was SIGKILLed under it, or before its endpoint went', () => {
    const r = record({ kills: [{ pod: 'p1', at: START + 10_000, endpointGoneAt: START + 10_500 }] });
    const failed = (pod: string, start: number, end: number) =>
      op({ pod, start, end, ok: false, error: 'x' });
    assert.equal(classifyFailure(failed('p1', START + 9000, START + 11_000), r), 'in flight at a SIGKILL');
    assert.equal(
      classifyFailure(failed('p1', START + 10_200, START + 10_300), r),
      'sent before its endpoint went',
    );
    assert.equal(classifyFailure(failed('p1', START + 11_000, START + 12_000), r), 'unexplained');
    assert.equal(classifyFailure(failed('p1', START + 1000, START + 9000), r), 'unexplained');
    assert.equal(classifyFailure(failed('p2', START + 9000, START + 11_000), r), 'unexplained');
    r.ops = [failed('p1', START + 9000, START + 11_000), failed('p2', START + 9000, START + 11_000)];
    const judged = judgeOps(r);
    assert.equal(judged.result.ok, false);
    assert.equal(judged.result.violations.length, 1);
    assert.match(judged.result.violations[0]!, /via p2/);
  });

  it('measure lag from the push a client did not get, and excuse upstream outages', () => {
    const h = new RefHistory('small', new Map([['refs/heads/main', 'a'.repeat(40)]]), START);
    h.apply({ at: START + 60_000, ref: 'refs/heads/main', sha: 'b'.repeat(40) });
    h.apply({ at: START + 200_000, ref: 'refs/heads/main', sha: 'c'.repeat(40) });
    const r = record({
      histories: [h.toJSON()],
      ops: [
        op({ kind: 'ls-remote', start: START + 62_000, state: 0 }), // 2 s behind
        op({ kind: 'ls-remote', start: START + 75_000, state: 0 }), // 15 s behind: over the bound
        op({ kind: 'ls-remote', start: START + 80_000, state: 1 }), // current
        op({ kind: 'ls-remote', start: START + 230_000, state: 1 }), // 30 s behind, upstream was down
      ],
      faults: [
        { kind: 'upstream-down', plannedMs: 0, at: START + 190_000, endedAt: START + 250_000, detail: '' },
      ],
    });
    const { result, figures } = judgeLag(r);
    assert.deepEqual(figures.all, [2000, 15_000, 0, 30_000]);
    assert.deepEqual(figures.judged, [2000, 15_000, 0]);
    assert.equal(result.violations.length, 1);
    assert.match(result.violations[0]!, /15\.0 s behind/);
  });

  it('see a leak through the noise of requests in flight, and not a flat level', () => {
    const random = prng(3);
    const series = (pod: string, fdsPerMin: number, mibPerMin: number): ResourceSample[] =>
      Array.from({ length: 120 }, (_, i) => {
        const at = START + i * 5000;
        const minutes = (at - START) / MIN;
        return {
          at,
          role: 'sidecar',
          pod,
          pid: 1,
          // In-flight requests add up to 20 fds and 40 MiB at any moment.
          fds: 30 + Math.floor(minutes * fdsPerMin) + Math.floor(random() * 20),
          rssBytes: (120 + minutes * mibPerMin + random() * 40) * 2 ** 20,
        };
      });
    const flat = judgeGrowth(record({ resources: series('flat', 0, 0) }));
    assert.deepEqual(flat.result.violations, []);
    assert.equal(flat.trends.length, 1);
    const leaking = judgeGrowth(record({ resources: [...series('fds', 4, 0), ...series('mem', 0, 10)] }));
    assert.equal(leaking.result.violations.length, 2, leaking.result.violations.join('\n'));
    assert.match(leaking.result.violations.find((v) => v.includes('fds'))!, /open fds grow/);
    assert.match(leaking.result.violations.find((v) => v.includes('mem'))!, /memory grows/);
  });

  it('judge no process that did not live through enough of the second half', () => {
    const short: ResourceSample[] = Array.from({ length: 20 }, (_, i) => ({
      at: START + 8 * MIN + i * 5000,
      role: 'operator',
      pod: 'late',
      pid: 9,
      fds: 20 + i * 10,
      rssBytes: 2 ** 27,
    }));
    const full = record({ resources: short });
    full.meta.short = false;
    const judged = judgeGrowth(full);
    assert.equal(judged.trends.length, 0);
    assert.match(judged.result.violations[0]!, /no process lived long enough/);
    // A short run says so instead of failing: its faults may leave no process old enough.
    const inShort = judgeGrowth(record({ resources: short })).result;
    assert.deepEqual(inShort.violations, []);
    assert.match(inShort.summary, /none lived long enough in this short run/);
  });

  it('judge an operator that took the Lease during the load only once it settled as leader', () => {
    const growing: ResourceSample[] = Array.from({ length: 120 }, (_, i) => ({
      at: START - MIN + i * 5000,
      role: 'operator',
      pod: 'standby',
      pid: 4,
      fds: 20,
      // As a leader's caches fill after a takeover at 6 min: 30 MiB in its first 2 minutes.
      rssBytes: (100 + Math.min(30, Math.max(0, (i * 5000 - 7 * MIN) / 4000))) * 2 ** 20,
    }));
    const judged = (leaders: SoakRecord['leaders']) => judgeGrowth(record({ resources: growing, leaders }));
    assert.equal(judged([]).result.violations.length, 1, 'without the takeover it is growth');
    const settling = judged([{ at: START + 6 * MIN, pod: 'standby' }]);
    assert.deepEqual(settling.trends, [], 'as a leader it did not settle before the run ended');
    assert.deepEqual(settling.result.violations, []);
  });

  it('hold every data dir to its budget', () => {
    const r = record({ disk: [{ at: START, pod: 'p1', bytes: 1000 }] });
    assert.ok(judgeBudget(r).ok);
    r.disk.push({ at: START + 1, pod: 'p2', bytes: 2048 });
    assert.deepEqual(judgeBudget(r).violations.length, 1);
  });

  it('bound the longest fetch by the histogram bucket that holds them all', () => {
    const metrics = [
      'gitmirror_git_operation_duration_seconds_bucket{le="1",operation="fetch",outcome="success"} 3',
      'gitmirror_git_operation_duration_seconds_bucket{le="2.5",operation="fetch",outcome="success"} 9',
      'gitmirror_git_operation_duration_seconds_bucket{le="5",operation="fetch",outcome="success"} 10',
      'gitmirror_git_operation_duration_seconds_bucket{le="+Inf",operation="fetch",outcome="success"} 10',
      'gitmirror_git_operation_duration_seconds_bucket{le="60",operation="clone",outcome="success"} 1',
    ].join('\n');
    assert.equal(fetchUpperBoundMs(metrics), 5000);
    assert.equal(fetchUpperBoundMs(''), 0);
  });

  it('fail the load when a tick found too many operations in flight', () => {
    const r = record({ ops: [op({}), op({ id: 1 })] });
    assert.ok(judgeLoad(r).ok);
    r.skippedTicks.push(START + 90_000);
    const judged = judgeLoad(r);
    assert.equal(judged.ok, false);
    assert.match(judged.violations[0]!, /^1 ticks skipped .*\(first at 90\.0 s\)$/);
  });

  it('fail a fault that never recovered, and one planned but never injected', () => {
    const r = record();
    r.plan = { ...r.plan, faults: r.plan.faults.slice(0, 2) };
    r.faults = [
      {
        kind: r.plan.faults[0]!.kind,
        plannedMs: 0,
        at: START,
        endedAt: START + 1,
        recoveredAt: START + 2,
        detail: '',
      },
    ];
    const judged = judgeFaults(r);
    assert.deepEqual(judged.violations, ['1 planned faults not injected']);
    r.faults.push({
      kind: r.plan.faults[1]!.kind,
      plannedMs: 0,
      at: START + 60_000,
      detail: 'p2',
      error: 'the fleet whole again: not within 600 s',
    });
    assert.deepEqual(judgeFaults(r).violations, [
      `${r.plan.faults[1]!.kind} at 60.0 s (p2): the fleet whole again: not within 600 s`,
    ]);
  });

  it('fail a clone that is not fsck clean, has refs upstream never had, or LFS files not upstream’s', () => {
    const clean = op({ fsck: 'clean', state: 3 });
    const lfs = op({ kind: 'lfs', repo: 'lfs', fsck: 'clean', state: 1, lfs: { objects: 8 } });
    assert.deepEqual(judgeClones(record({ ops: [clean, lfs] })).violations, []);
    assert.match(judgeClones(record({ ops: [lfs] })).summary, /8 LFS files checked/);
    const judged = judgeClones(
      record({
        ops: [
          op({ fsck: 'error in commit 1234: missingAuthor' }),
          op({ state: null }),
          op({ kind: 'checkout', refKnown: false }),
          op({ ...lfs, lfs: { objects: 8, problem: 'assets/asset-1.bin has 133 bytes' } }),
          // A failed operation is ops-succeed's to judge, not this one's.
          op({ ok: false, fsck: 'broken', state: null }),
        ],
      }),
    );
    assert.equal(judged.violations.length, 4, judged.violations.join('\n'));
    assert.match(
      judged.violations[3]!,
      /^lfs lfs via p1 at 0\.0 s: LFS: assets\/asset-1\.bin has 133 bytes$/,
    );
  });

  it('fail every final invariant when the final checks did not run, and each on its own list', () => {
    assert.deepEqual(
      judgeFinal(record()).map((r) => r.ok),
      [false, false, false],
    );
    const final = {
      mirrorsEqualUpstream: [],
      snapshotsWhole: ['LFS gitmirror/lfs/ab/abc is 3 bytes'],
      leftovers: [],
      multipartUploads: [],
      orphanedProcesses: ['p1: sleep 86400'],
      checkedAt: START,
    };
    assert.deepEqual(
      judgeFinal(record({ final })).map((r) => [r.id, r.ok]),
      [
        ['mirrors-equal-upstream', true],
        ['snapshots-whole', false],
        ['nothing-left-over', false],
      ],
    );
  });
});
