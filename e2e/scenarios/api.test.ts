import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { E2eCluster } from '../cluster/cluster.ts';
import { REPO_ROOT } from '../cluster/local-cluster.ts';
import { CommandError } from '../cluster/processes.ts';
import { startCluster } from './support/environment.ts';
import { waitFor } from './support/poll.ts';

/**
 * The control plane itself and the GitMirror API on it: the API server answers with RBAC in
 * force, the CRD is accepted and established, and the API server — not only our unit tests'
 * CEL interpreter — rejects invalid GitMirrors with the CRD's messages and applies its defaults.
 */

const NS = 'api-e2e';

describe('the GitMirror API on a real API server', { timeout: 600_000 }, () => {
  let cluster: E2eCluster;

  before(async () => {
    cluster = await startCluster();
    await cluster.kubectl(['create', 'namespace', NS]);
  });

  after(async () => {
    if (cluster?.kind === 'existing') await cluster.kubectl(['delete', 'namespace', NS, '--wait=true']);
    await cluster?.stop();
  });

  it('serves the pinned Kubernetes version with RBAC in force', async () => {
    const { stdout } = await cluster.kubectl(['version', '-o', 'json']);
    const version = JSON.parse(stdout) as { serverVersion: { gitVersion: string } };
    assert.match(version.serverVersion.gitVersion, /^v1\.\d+\.\d+/);
    const canI = await cluster
      .kubectl(['auth', 'can-i', 'list', 'secrets', '-n', NS, `--as=system:serviceaccount:${NS}:default`])
      .catch((err: CommandError) => ({ stdout: err.stdout }));
    assert.equal(canI.stdout.trim(), 'no');
  });

  it('establishes the GitMirror CRD', async () => {
    await cluster.kubectl(['apply', '--server-side', '-f', join(REPO_ROOT, 'crds', 'gitmirror.yaml')]);
    await cluster.kubectl([
      'wait',
      '--for=condition=Established',
      'crd/gitmirrors.gitmirror.dev',
      '--timeout=60s',
    ]);
    // Discovery can lag the Established condition by a moment.
    await waitFor('gitmirrors in discovery', async () => {
      const { stdout } = await cluster.kubectl(['api-resources', '--api-group=gitmirror.dev', '-o', 'name']);
      return stdout.includes('gitmirrors.gitmirror.dev');
    });
  });

  it('rejects a GitMirror with credentials in its URL, with the CEL message', async () => {
    const err = await apply(cluster, 'with-creds', {
      url: 'https://user:secret@github.com/org/repo.git',
    }).then(
      () => assert.fail('the API server accepted an invalid GitMirror'),
      (e: CommandError) => e,
    );
    assert.match(err.stderr, /url must not contain credentials/);
    assert.match(err.stderr, /spec\.credentialsSecretRef/);
  });

  it('rejects an out-of-range snapshot.retain and a non-http URL', async () => {
    const retain = await apply(cluster, 'retain', {
      url: 'https://github.com/org/repo.git',
      snapshot: { retain: 1 },
    }).catch((e: CommandError) => e);
    assert.ok(retain instanceof CommandError, 'retain: 1 was accepted');
    assert.match(retain.stderr, /snapshot\.retain must be at least 2/);
    const ssh = await apply(cluster, 'ssh', { url: 'ssh://git@github.com/org/repo.git' }).catch(
      (e: CommandError) => e,
    );
    assert.ok(ssh instanceof CommandError, 'an ssh URL was accepted');
    assert.match(ssh.stderr, /url must start with https:\/\/ or http:\/\//);
  });

  it('accepts a valid GitMirror, applies defaults and keeps url immutable', async () => {
    await apply(cluster, 'valid', { url: 'https://github.com/org/repo.git' });
    const { stdout } = await cluster.kubectl(['get', 'gm', 'valid', '-n', NS, '-o', 'json']);
    const spec = (JSON.parse(stdout) as { spec: Record<string, unknown> }).spec;
    assert.equal(spec.cache, 'default');
    assert.equal(spec.fetchInterval, '5m');
    const changed = await apply(cluster, 'valid', { url: 'https://github.com/org/other.git' }).catch(
      (e: CommandError) => e,
    );
    assert.ok(changed instanceof CommandError, 'changing url was accepted');
    assert.match(changed.stderr, /url is immutable/);
  });
});

function apply(cluster: E2eCluster, name: string, spec: Record<string, unknown>) {
  const manifest = {
    apiVersion: 'gitmirror.dev/v1alpha1',
    kind: 'GitMirror',
    metadata: { name, namespace: NS },
    spec,
  };
  return cluster.kubectl(['apply', '-f', '-'], { input: JSON.stringify(manifest) });
}
