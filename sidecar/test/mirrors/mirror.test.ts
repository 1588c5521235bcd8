import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseRepoId } from '../../../core/repo-id.ts';
import { TestClock } from '../../../testing/test-clock.ts';
import { isGitMirrorError } from '../../src/errors/gitmirror-error.ts';
import { Mirror, type MirrorSettings } from '../../src/mirrors/mirror.ts';

/**
 * The mirror's lifecycle, one transition at a time: what a caller reports, and what the
 * mirror then is as the admin API shows it.
 */

const START = Date.parse('2026-01-01T00:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();
const HEAD = 'a'.repeat(40);
const NEWER = 'b'.repeat(40);
const SNAPSHOT = { key: 'h/o/r/1.tar.zst', commit: HEAD, createdAt: iso(START - 60_000), sizeBytes: 42 };

function settings(writer = false): MirrorSettings {
  return {
    fetchIntervalMs: 300_000,
    snapshot: { writer, retain: 3 },
    access: 'Public',
    lfs: { prefetch: 'None' },
    fleet: {},
  };
}

function mirror() {
  const clock = new TestClock(START);
  const m = new Mirror({
    repo: parseRepoId('h/o/r'),
    upstream: 'https://h/o/r',
    dir: '/d',
    settings: settings(),
    clock,
  });
  return { m, clock };
}

/** A mirror serving a clone, its warm-up over. */
function readyMirror() {
  const { m, clock } = mirror();
  m.beginWarmup();
  m.cloning('no snapshot published yet');
  m.readyFrom({ source: 'clone', head: HEAD, fetched: { ok: true } });
  return { m, clock };
}

describe('a mirror', () => {
  it('starts empty: not serving, no warm-up, nothing fetched', () => {
    const { m } = mirror();
    assert.equal(m.state, 'empty');
    assert.equal(m.ready, false);
    const status = m.status();
    assert.deepEqual(status.restore, { phase: 'idle', bytesDone: 0 });
    assert.equal(status.head, undefined);
    assert.equal(status.lastFetchTime, undefined);
    assert.equal(status.stalenessSeconds, undefined);
    assert.equal(status.origin, 'configured');
  });

  describe('warm-up', () => {
    it('beginWarmup: an empty mirror is restoring, resolving the snapshot it was asked for', () => {
      const { m } = mirror();
      m.beginWarmup('h/o/r/1.tar.zst');
      assert.equal(m.state, 'restoring');
      assert.deepEqual(m.restore, {
        phase: 'resolving',
        bytesDone: 0,
        startedAt: iso(START),
        key: 'h/o/r/1.tar.zst',
      });
    });

    it('beginWarmup: a ready mirror goes on serving while it is restored again', () => {
      const { m } = readyMirror();
      m.beginWarmup();
      assert.equal(m.state, 'ready');
      assert.equal(m.restore.phase, 'resolving');
      assert.equal(m.restore.source, undefined, 'the new attempt has no outcome yet');
    });

    it('beginWarmup: refused while one runs, and after removal', () => {
      const { m } = mirror();
      m.beginWarmup();
      assert.throws(
        () => m.beginWarmup(),
        (err) => isGitMirrorError(err, 'CONFLICT'),
      );
      m.remove();
      assert.throws(
        () => m.beginWarmup(),
        (err) => isGitMirrorError(err, 'ABORTED'),
      );
    });

    it('downloadingSnapshot and warmupProgress: the download phase with its byte counts', () => {
      const { m } = mirror();
      m.beginWarmup();
      m.downloadingSnapshot();
      m.warmupProgress({ bytesDone: 10, bytesTotal: 42 });
      assert.equal(m.state, 'restoring');
      assert.equal(m.restore.phase, 'downloading');
      assert.equal(m.restore.bytesDone, 10);
      assert.equal(m.restore.bytesTotal, 42);
    });

    it('checkingSnapshot: records the key actually restored (the latest, when none was named)', () => {
      const { m } = mirror();
      m.beginWarmup();
      m.checkingSnapshot('h/o/r/latest.tar.zst');
      assert.equal(m.restore.phase, 'checking');
      assert.equal(m.restore.key, 'h/o/r/latest.tar.zst');
    });

    it('catchingUp: the restored mirror is installed and is being fetched', () => {
      const { m } = mirror();
      m.beginWarmup();
      m.catchingUp();
      assert.equal(m.state, 'restoring');
      assert.equal(m.restore.phase, 'catching-up');
    });

    it('cloning: an empty mirror shows it clones, and why it did not restore', () => {
      const { m } = mirror();
      m.beginWarmup();
      m.cloning('SNAPSHOT_CORRUPT: bad archive');
      assert.equal(m.state, 'cloning');
      assert.equal(m.restore.phase, 'cloning');
      assert.equal(m.restore.error, 'SNAPSHOT_CORRUPT: bad archive');
      m.cloning();
      assert.equal(m.restore.error, undefined, 'no reason given, none shown');
    });

    it('warm-up steps reported outside a warm-up change nothing', () => {
      const { m } = readyMirror();
      const before = m.status();
      m.downloadingSnapshot();
      m.warmupProgress({ bytesDone: 1 });
      m.checkingSnapshot('other');
      m.catchingUp();
      m.cloning('late');
      m.warmupFailed('late');
      assert.deepEqual(m.status(), before);
    });
  });

  describe('readyFrom', () => {
    it('snapshot: serves it, counts the catch-up as a fetch and clears the fallback reason', () => {
      const { m, clock } = mirror();
      m.beginWarmup();
      m.cloning('an earlier reason');
      clock.advance(3_000);
      m.readyFrom({ source: 'snapshot', head: HEAD, fetched: { ok: true } });
      assert.equal(m.state, 'ready');
      const status = m.status();
      assert.equal(status.head, HEAD);
      assert.equal(status.lastFetchTime, iso(START + 3_000));
      assert.equal(status.lastFetchError, undefined);
      assert.equal(status.stalenessSeconds, 0);
      assert.deepEqual(status.restore, {
        phase: 'done',
        bytesDone: 0,
        startedAt: iso(START),
        key: undefined,
        source: 'snapshot',
        error: undefined,
        finishedAt: iso(START + 3_000),
      });
      assert.equal(m.upstreamCheckDue(1_000), false, 'the catch-up just talked to upstream');
    });

    it('snapshot, upstream unreachable: serves the restored data stale, with the fetch error', () => {
      const { m } = mirror();
      m.beginWarmup();
      m.readyFrom({ source: 'snapshot', head: HEAD, fetched: { ok: false, error: 'FETCH_FAILED: 503' } });
      assert.equal(m.state, 'ready');
      const status = m.status();
      assert.equal(status.head, HEAD);
      assert.equal(status.lastFetchError, 'FETCH_FAILED: 503');
      assert.equal(status.lastFetchTime, undefined, 'never fetched successfully');
      assert.equal(m.upstreamCheckDue(1_000), false, 'no ref check on the next request either');
    });

    it('clone: keeps the reason the restore fell back, and counts the clone as a fetch', () => {
      const { m } = readyMirror();
      assert.equal(m.state, 'ready');
      assert.equal(m.restore.source, 'clone');
      assert.equal(m.restore.error, 'no snapshot published yet');
      assert.equal(m.status().lastFetchTime, iso(START));
    });

    it('disk: only an empty mirror found at start; no warm-up ran and upstream was not asked', () => {
      const { m } = mirror();
      m.readyFrom({ source: 'disk', head: HEAD });
      assert.equal(m.state, 'ready');
      assert.deepEqual(m.restore, { phase: 'done', bytesDone: 0, source: 'disk' });
      assert.equal(m.status().lastFetchTime, undefined);
      assert.equal(m.upstreamCheckDue(1_000), true);
      const warming = mirror().m;
      warming.beginWarmup();
      warming.readyFrom({ source: 'disk', head: HEAD });
      assert.equal(warming.restore.phase, 'resolving', 'a warm-up under way is not "found on disk"');
    });

    it('snapshot or clone: only at the end of a warm-up', () => {
      const { m } = mirror();
      m.readyFrom({ source: 'clone', head: HEAD, fetched: { ok: true } });
      assert.equal(m.state, 'empty');
    });
  });

  describe('warmupFailed', () => {
    it('an empty mirror fails, with the reason and when', () => {
      const { m, clock } = mirror();
      m.beginWarmup();
      m.cloning('no snapshot store');
      clock.advance(1_000);
      m.warmupFailed('no snapshot store; then the clone failed: 403');
      assert.equal(m.state, 'failed');
      assert.equal(m.ready, false);
      assert.equal(m.restore.phase, 'failed');
      assert.equal(m.restore.error, 'no snapshot store; then the clone failed: 403');
      assert.equal(m.restore.finishedAt, iso(START + 1_000));
    });

    it('a mirror that was serving goes on serving, and can be warmed up again', () => {
      const { m } = readyMirror();
      m.beginWarmup();
      m.warmupFailed('SNAPSHOT_CORRUPT; then the clone failed: timeout');
      assert.equal(m.state, 'ready');
      assert.equal(m.restore.phase, 'failed');
      m.beginWarmup();
      assert.equal(m.state, 'ready', 'still serving during the next attempt');
    });

    it('a failed empty mirror warms up again from scratch', () => {
      const { m } = mirror();
      m.beginWarmup();
      m.warmupFailed('boom');
      m.beginWarmup();
      assert.equal(m.state, 'restoring');
      assert.equal(m.restore.error, undefined);
    });
  });

  describe('recordFetch', () => {
    it('success: new head, fetch time, no error; staleness counts from it', () => {
      const { m, clock } = readyMirror();
      clock.advance(60_000);
      assert.equal(m.status().stalenessSeconds, 60);
      m.recordFetch({ ok: true, head: NEWER });
      const status = m.status();
      assert.equal(status.head, NEWER);
      assert.equal(status.lastFetchTime, iso(START + 60_000));
      assert.equal(status.stalenessSeconds, 0);
      assert.equal(m.upstreamCheckDue(1), false);
    });

    it('failure: the error shows, the last good fetch time stays and staleness grows', () => {
      const { m, clock } = readyMirror();
      clock.advance(2_000);
      m.recordFetch({ ok: false, error: 'FETCH_FAILED: 503' });
      const status = m.status();
      assert.equal(status.lastFetchError, 'FETCH_FAILED: 503');
      assert.equal(status.lastFetchTime, iso(START));
      assert.equal(status.head, HEAD);
      assert.equal(status.stalenessSeconds, 2);
      assert.equal(m.stalenessSeconds(), 2);
    });

    it('a forced restore whose catch-up succeeds clears an earlier fetch error (regression)', () => {
      const { m } = readyMirror();
      m.recordFetch({ ok: false, error: 'FETCH_FAILED: 503' });
      m.beginWarmup();
      m.readyFrom({ source: 'snapshot', head: NEWER, fetched: { ok: true } });
      assert.equal(m.status().lastFetchError, undefined, 'Fresh would otherwise stay False');
      assert.equal(m.head, NEWER);
    });
  });

  describe('in a fleet', () => {
    const fleet = { followers: ['http://f:9090'] };
    it('servesFleet: only the writer, once ready, and not after failing to fetch for two intervals', () => {
      const { m, clock } = mirror();
      m.applySpec({ ...settings(true), fleet }, 'd');
      assert.equal(m.servesFleet().ok, false, 'not ready yet');
      m.beginWarmup();
      m.readyFrom({ source: 'clone', head: HEAD, fetched: { ok: true } });
      assert.deepEqual(m.servesFleet(), { ok: true });
      clock.advance(9 * 60_000);
      m.recordFetch({ ok: false, error: 'upstream down' });
      assert.deepEqual(m.servesFleet(), { ok: true }, 'stale by less than two intervals');
      clock.advance(2 * 60_000);
      const refused = m.servesFleet();
      assert.equal(refused.ok, false);
      assert.match(
        !refused.ok ? refused.reason : '',
        /has not fetched from upstream for 660 s: upstream down/,
      );
      m.recordFetch({ ok: true, head: NEWER });
      assert.deepEqual(m.servesFleet(), { ok: true });
      m.applySpec(settings(false), 'd2');
      assert.match(JSON.stringify(m.servesFleet()), /not h\/o\/r's writer/);
    });

    it('fleetStatus: the role, where the last fetch came from, and the writer error until a fetch from it succeeds', () => {
      const { m } = readyMirror();
      assert.deepEqual(m.status().fleet, { role: 'alone', lastFetchSource: 'upstream' });
      m.applySpec({ ...settings(true), fleet }, 'd');
      assert.equal(m.status().fleet?.followers, 1);
      m.applySpec({ ...settings(), fleet: { writer: 'http://w:9090' } }, 'd');
      assert.equal(m.writerFailed('HTTP 503'), true, 'news the first time');
      assert.equal(m.writerFailed('HTTP 503'), false);
      m.recordFetch({ ok: true, head: NEWER });
      assert.deepEqual(m.status().fleet, {
        role: 'follower',
        writer: 'http://w:9090',
        lastFetchSource: 'upstream',
        writerError: 'HTTP 503',
      });
      m.recordFetch({ ok: true, head: NEWER, source: 'writer' });
      assert.deepEqual(m.status().fleet, {
        role: 'follower',
        writer: 'http://w:9090',
        lastFetchSource: 'writer',
      });
    });
  });

  it('upstreamChecked: the next ref check is due one interval later', () => {
    const { m, clock } = mirror();
    assert.equal(m.upstreamCheckDue(5_000), true, 'never checked');
    m.upstreamChecked();
    clock.advance(4_999);
    assert.equal(m.upstreamCheckDue(5_000), false);
    clock.advance(1);
    assert.equal(m.upstreamCheckDue(5_000), true);
  });

  describe('snapshots', () => {
    it('snapshotStarted: running, with the attempt time', () => {
      const { m } = readyMirror();
      m.snapshotStarted();
      assert.deepEqual(m.snapshot, { running: true, lastAttemptAt: iso(START) });
    });

    it('snapshotFinished: the result, and a published one becomes the latest snapshot', () => {
      const { m } = readyMirror();
      m.snapshotStarted();
      const manifest = { ...SNAPSHOT, sha256: 'f'.repeat(64), refsDigest: 'r' };
      m.snapshotFinished({ ok: true, result: 'published', latest: manifest });
      assert.equal(m.snapshot.running, false);
      assert.equal(m.snapshot.lastResult, 'published');
      assert.deepEqual(m.status().latestSnapshot, SNAPSHOT, 'only the reference, not the whole manifest');
    });

    it('snapshotFinished: a failure keeps the last latest snapshot and shows the error until a success', () => {
      const { m } = readyMirror();
      m.sawSnapshot(SNAPSHOT);
      m.snapshotStarted();
      m.snapshotFinished({ ok: false, error: 'SNAPSHOT_STORE_FAILED: 503' });
      assert.deepEqual(
        { ...m.snapshot },
        {
          running: false,
          lastAttemptAt: iso(START),
          lastResult: 'failed',
          lastError: 'SNAPSHOT_STORE_FAILED: 503',
        },
      );
      assert.deepEqual(m.status().latestSnapshot, SNAPSHOT);
      m.snapshotFinished({ ok: true, result: 'unchanged', latest: SNAPSHOT });
      assert.equal(m.snapshot.lastError, undefined);
    });
  });

  describe('configuration', () => {
    it('applySpec: new settings and digest, configured, and whether the writer role was lost', () => {
      const clock = new TestClock(START);
      const writer = settings(true);
      const repo = parseRepoId('h/o/r');
      const m = new Mirror({ repo, upstream: 'u', dir: '/d', settings: writer, origin: 'on-demand', clock });
      assert.deepEqual(m.applySpec(settings(true), 'digest-1'), { demoted: false, rescheduled: false });
      assert.equal(m.origin, 'configured');
      assert.deepEqual(m.applySpec(settings(false), 'digest-2'), { demoted: true, rescheduled: true });
      assert.equal(m.status().specDigest, 'digest-2');
      assert.equal(m.status().snapshot.writer, false);
    });

    it('applySpec: only a new fetch interval or snapshot schedule moves the periodic work, not new credentials', () => {
      const { m } = mirror();
      const token = (password: string): MirrorSettings['credentials'] => ({
        forCommand: async () => ({ username: 'x-access-token', password }),
      });
      const base = settings();
      const rotated = (password: string) => m.applySpec({ ...base, credentials: token(password) }, password);
      assert.equal(rotated('t1').rescheduled, false);
      assert.equal(rotated('t2').rescheduled, false, 'a token rotation keeps the schedule');
      assert.equal(m.applySpec({ ...base, fetchIntervalMs: 60_000 }, 'd').rescheduled, true);
      const snapshotEvery = (intervalMs: number) => ({
        ...base,
        fetchIntervalMs: 60_000,
        snapshot: { writer: true, intervalMs, retain: 3 },
      });
      assert.equal(m.applySpec(snapshotEvery(3_600_000), 'd').rescheduled, true);
      assert.equal(m.applySpec(snapshotEvery(7_200_000), 'd').rescheduled, true);
      assert.equal(m.applySpec({ ...snapshotEvery(7_200_000), access: 'Private' }, 'd').rescheduled, false);
    });

    it('markConfigured: an on-demand or disk mirror stops counting against the on-demand bound', () => {
      const m = new Mirror({
        repo: parseRepoId('h/o/r'),
        upstream: 'u',
        dir: '/d',
        settings: settings(),
        origin: 'disk',
      });
      m.markConfigured();
      assert.equal(m.origin, 'configured');
    });
  });

  it('serveStarted and serveFinished count the serves in flight', () => {
    const { m } = readyMirror();
    m.serveStarted();
    m.serveStarted();
    m.serveFinished();
    assert.equal(m.activeServes, 1);
  });

  it('lfsPrefetched: a complete run covers its refs, a run with a failure covers nothing; status shows the last', () => {
    const { m, clock } = readyMirror();
    assert.equal(m.status().lfs?.lastPrefetch, undefined);
    assert.equal(m.lfsPrefetchCovers('Head:r1'), false);
    m.lfsPrefetched('Head:r1', { objects: 3, held: 1, fetched: 2, failed: 0 });
    assert.equal(m.lfsPrefetchCovers('Head:r1'), true);
    assert.equal(m.lfsPrefetchCovers('Head:r2'), false, 'the refs moved');
    clock.advance(1_000);
    m.lfsPrefetched('Head:r2', {
      objects: 4,
      held: 3,
      fetched: 0,
      failed: 1,
      error: 'upstream answered 503',
    });
    assert.equal(
      m.lfsPrefetchCovers('Head:r2'),
      false,
      'a failed object is tried again after the next fetch',
    );
    assert.deepEqual(m.status().lfs, {
      prefetch: 'None',
      lastPrefetch: {
        objects: 4,
        held: 3,
        fetched: 0,
        failed: 1,
        error: 'upstream answered 503',
        finishedAt: iso(START + 1_000),
      },
    });
  });

  it('remove: final; a warm-up that finishes afterwards cannot bring the mirror back', () => {
    const { m } = readyMirror();
    m.beginWarmup();
    m.remove();
    assert.equal(m.lifecycle.kind, 'removed');
    assert.equal(m.ready, false);
    m.readyFrom({ source: 'snapshot', head: NEWER, fetched: { ok: true } });
    m.warmupFailed('aborted');
    assert.equal(m.state, 'empty');
    assert.equal(m.lifecycle.kind, 'removed');
  });
});
