import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { git } from '../../../testing/git.ts';
import { createUpstreamRepo } from '../../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../../testing/git-upstream.ts';
import { startTestSidecar } from '../../../testing/in-process-sidecar.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';
import { waitFor } from '../../../testing/wait.ts';
import type { RunningSidecar } from '../../src/server/sidecar.ts';

interface RequestLine {
  msg: string;
  method: string;
  path: string;
  route: string;
  mirror?: string;
  source?: string;
  status: number;
  aborted: boolean;
  durationMs: number;
  authorization?: unknown;
}

/** The value of one series in Prometheus text, 0 when absent. */
function sample(metrics: string, series: string): number {
  const line = metrics.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

/**
 * Each git request's context, as the one request log line and the request and byte counters
 * show it once the request is over: which route, which repository, where the answer came from.
 */
describe('the request log and request metrics', () => {
  let root: string;
  let upstream: GitUpstream;
  let sidecar: RunningSidecar;
  let id: string;
  const lines: RequestLine[] = [];
  const requestLines = () => lines.filter((l) => l.msg === 'request');
  const metrics = async () => (await fetch(`${sidecar.adminUrl}/metrics`)).text();

  before(async () => {
    root = await tempDir();
    await createUpstreamRepo(join(root, 'upstream', 'org'), 'repo', 3);
    upstream = await startGitUpstream(join(root, 'upstream'));
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()));
        done();
      },
    });
    sidecar = await startTestSidecar(
      {
        GITMIRROR_DATA_DIR: join(root, 'data'),
        GITMIRROR_MIRRORS: upstream.url('org/repo.git'),
        GITMIRROR_HTTP_HOSTS: upstream.host,
        GITMIRROR_MAX_ON_DEMAND_MIRRORS: '0',
      },
      { logger: pino({ level: 'info' }, stream) },
    );
    await waitFor('mirror ready', () => sidecar.isReady());
    id = `${upstream.host}/org/repo`;
  });

  after(async () => {
    await sidecar.shutdown();
    await upstream.close();
    await removeDir(root);
  });

  /** Sends one request and returns its log line, once the request is over. */
  async function logged(path: string, init: RequestInit = {}): Promise<RequestLine> {
    const seen = requestLines().length;
    const res = await fetch(`${sidecar.gitUrl}${path}`, {
      ...init,
      headers: { authorization: 'Basic c2VjcmV0', ...init.headers },
    });
    await res.arrayBuffer();
    await waitFor('the request line', () => requestLines().length > seen);
    assert.equal(requestLines().length, seen + 1, 'one line per request');
    return requestLines().at(-1)!;
  }

  it('logs a local answer with its route, repository and source, and no header values', async () => {
    const line = await logged(`/git/${id}.git/info/refs?service=git-upload-pack`);
    const { method, path, route, mirror, source, status, aborted } = line;
    assert.deepEqual(
      { method, path, route, mirror, source, status, aborted },
      {
        method: 'GET',
        path: `/git/${id}.git/info/refs`,
        route: 'info-refs',
        mirror: id,
        source: 'local',
        status: 200,
        aborted: false,
      },
    );
    assert.ok(line.durationMs >= 0);
    assert.ok(!JSON.stringify(line).includes('c2VjcmV0'), 'the Authorization header is not logged');
  });

  it('logs a relayed answer for a repository without a mirror as upstream', async () => {
    const line = await logged(`/git/${upstream.host}/org/missing.git/info/refs?service=git-upload-pack`);
    assert.equal(line.route, 'info-refs');
    assert.equal(line.mirror, `${upstream.host}/org/missing`);
    assert.equal(line.source, 'upstream');
    assert.equal(line.status, 404);
  });

  it('logs requests that reach no git endpoint as route other, without a source', async () => {
    const notGit = await logged(`/git/${id}.git/objects/info/packs`);
    assert.deepEqual([notGit.route, notGit.source, notGit.status], ['other', undefined, 404]);
    const method = await logged(`/git/${id}.git/info/refs`, { method: 'PUT' });
    assert.deepEqual([method.route, method.source, method.status], ['other', undefined, 405]);
  });

  it('counts requests by route and outcome, and response bytes with the labels dashboards use', async () => {
    const before = await metrics();
    const missing = `${sidecar.gitUrl}/git/${upstream.host}/org/missing.git/info/refs?service=git-upload-pack`;
    await git([
      '-c',
      'protocol.version=2',
      'clone',
      '--quiet',
      '--bare',
      `${sidecar.gitUrl}/git/${id}.git`,
      join(root, 'clone'),
    ]);
    await (await fetch(missing)).text();
    // A clone (v2): info/refs, ls-refs and fetch; then the relayed 404. Each is counted once it is over.
    await waitFor('all four to be counted', async () => {
      const now = await metrics();
      const total = (m: string) =>
        [...m.matchAll(/^gitmirror_http_requests_total\{[^}]*\} (\d+)$/gm)].reduce(
          (n, x) => n + Number(x[1]),
          0,
        );
      return total(now) - total(before) >= 4;
    });
    const after = await metrics();
    const grew = (series: string) => sample(after, series) - sample(before, series);
    assert.equal(grew('gitmirror_http_requests_total{route="info-refs",outcome="local_200"}'), 1);
    assert.equal(grew('gitmirror_http_requests_total{route="upload-pack",outcome="local_200"}'), 2);
    assert.equal(grew('gitmirror_http_requests_total{route="info-refs",outcome="upstream_404"}'), 1);
    assert.ok(grew('gitmirror_http_response_bytes_total{route="info_refs",source="local"}') > 0);
    assert.ok(grew('gitmirror_http_response_bytes_total{route="upload_pack",source="local"}') > 0);
    assert.ok(after.includes('gitmirror_http_response_bytes_total{route="info-refs",source="upstream"}'));
  });
});
