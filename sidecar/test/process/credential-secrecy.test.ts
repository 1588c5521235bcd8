import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { git } from '../../../testing/git.ts';
import { addCommit, createUpstreamRepo } from '../../../testing/git-repos.ts';
import { type GitUpstream, startGitUpstream } from '../../../testing/git-upstream.ts';
import { type SidecarProcess, startSidecarProcess } from '../../../testing/sidecar-process.ts';
import { removeDir, tempDir } from '../../../testing/temp-dir.ts';

const exec = promisify(execFile);
const SECRET = `canary-${Math.random().toString(36).slice(2)}-secret`;

/** argv of every process on the machine, sampled repeatedly while work runs. */
function sampleArgv(seen: Set<string>): () => void {
  let stop = false;
  const loop = async () => {
    while (!stop) {
      for (const pid of await readdir('/proc').catch(() => [])) {
        if (!/^\d+$/.test(pid)) continue;
        const argv = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
        if (argv) seen.add(argv.replaceAll('\0', ' '));
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  void loop();
  return () => {
    stop = true;
  };
}

async function filesContaining(dir: string, needle: string): Promise<string[]> {
  const hits: string[] = [];
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    const content = await readFile(path).catch(() => Buffer.alloc(0));
    if (content.includes(needle)) hits.push(path);
  }
  return hits;
}

describe('upstream credentials', () => {
  let root: string;
  let upstream: GitUpstream;
  let sidecar: SidecarProcess;
  let work: string;
  const argvSeen = new Set<string>();
  let snapshotKey = '';

  before(async () => {
    root = await tempDir();
    ({ work } = await createUpstreamRepo(join(root, 'upstream', 'corp'), 'private', 5));
    upstream = await startGitUpstream(join(root, 'upstream'), {
      basicAuth: { user: 'bot', password: SECRET },
    });
    const credentialsFile = join(root, 'credentials');
    await writeFile(credentialsFile, `http://bot:${SECRET}@${upstream.host}/corp\n`, { mode: 0o600 });
    const stopSampling = sampleArgv(argvSeen);
    sidecar = await startSidecarProcess({
      GITMIRROR_DATA_DIR: join(root, 'data'),
      GITMIRROR_MIRRORS: upstream.url('corp/private.git'),
      GITMIRROR_HTTP_HOSTS: upstream.host,
      GITMIRROR_CREDENTIALS_FILE: credentialsFile,
      GITMIRROR_REF_CHECK_INTERVAL: '1s',
    });
    await sidecar.waitUntilOk('/readyz', { timeoutMs: 60_000 });
    // Exercise clone, freshness check, fetch and serving while argv is sampled.
    await addCommit(work, 'new.txt', 'new\n');
    await git(['push', '--quiet', 'origin', 'main'], { cwd: work });
    await new Promise((r) => setTimeout(r, 1100));
    const url = `${sidecar.gitUrl}/git/${upstream.host}/corp/private.git`;
    // The client authenticates like CI would: a credential helper reading the environment.
    await git(['clone', '--quiet', '--bare', url, join(root, 'client')], {
      env: {
        GIT_CONFIG_COUNT: '1',
        GIT_CONFIG_KEY_0: 'credential.helper',
        GIT_CONFIG_VALUE_0: '!f() { echo username=bot; echo "password=$CLIENT_SECRET"; }; f',
        CLIENT_SECRET: SECRET,
      },
    });
    await fetch(`${sidecar.adminUrl}/v1/mirrors/${upstream.host}/corp/private/fetch?wait=true`, {
      method: 'POST',
    });
    const published = await fetch(
      `${sidecar.adminUrl}/v1/mirrors/${upstream.host}/corp/private/snapshot?wait=true`,
      {
        method: 'POST',
      },
    );
    assert.equal(published.status, 200);
    snapshotKey = ((await published.json()) as { manifest: { key: string } }).manifest.key;
    stopSampling();
  });

  after(async () => {
    await sidecar.stop();
    await upstream.close();
    await removeDir(root);
  });

  it('let the mirror clone and fetch a private upstream', async () => {
    const res = await fetch(`${sidecar.adminUrl}/v1/mirrors/${upstream.host}/corp/private`);
    const status = (await res.json()) as { ready: boolean; access: string; lastFetchError?: string };
    assert.equal(status.ready, true);
    assert.equal(status.access, 'Private', 'a mirror with credentials defaults to Private');
    assert.equal(status.lastFetchError, undefined);
  });

  it('never appear in any process argv', () => {
    assert.ok(argvSeen.size > 10, 'argv was sampled');
    assert.ok(
      [...argvSeen].some((a) => a.includes('git')),
      'git processes were seen',
    );
    const leaks = [...argvSeen].filter((a) => a.includes(SECRET));
    assert.deepEqual(leaks, []);
  });

  it('never appear in logs, neither raw nor base64 encoded', () => {
    const output = sidecar.output();
    assert.ok(output.includes('"msg":"request"'), 'request logs were written');
    assert.ok(!output.includes(SECRET));
    assert.ok(!output.includes(Buffer.from(`bot:${SECRET}`).toString('base64')));
  });

  it('never appear in any file under the data dir', async () => {
    assert.deepEqual(await filesContaining(join(root, 'data'), SECRET), []);
  });

  it('never appear in a published snapshot, compressed or not, nor in a metric', async () => {
    const archive = join(root, 'data', 'snapshots', snapshotKey);
    const { stdout } = await exec('zstd', ['-dc', archive], { encoding: 'buffer', maxBuffer: 1 << 30 });
    assert.ok(stdout.length > 0);
    assert.ok(!stdout.includes(SECRET), 'the tar inside the snapshot holds no secret');
    assert.ok(!(await readFile(archive)).includes(SECRET));
    const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    assert.ok(metrics.includes('gitmirror_snapshots_total'));
    assert.ok(!metrics.includes(SECRET));
  });

  it('refuse a client without credentials and one with wrong credentials', async () => {
    const url = `${sidecar.gitUrl}/git/${upstream.host}/corp/private.git/info/refs?service=git-upload-pack`;
    assert.equal((await fetch(url)).status, 401);
    const wrong = await fetch(url, {
      headers: { authorization: `Basic ${Buffer.from('bot:wrong').toString('base64')}` },
    });
    assert.equal(wrong.status, 403);
  });
});
