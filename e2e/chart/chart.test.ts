import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { parse } from 'yaml';
import { SIDECAR_NODE_FLAGS } from '../../testing/sidecar-process.ts';
import {
  CHART_DIR,
  helm,
  KUBE_VERSION,
  type Manifest,
  one,
  renderChart,
  renderNotes,
  templateChart,
} from './render.ts';

/**
 * The chart rendered by the real helm binary: what `helm install` would send to the API server
 * under the default values and the configurations users are most likely to pick. Whether the
 * API server accepts the result is the business of the cluster tests, which use the same
 * `renderChart`.
 */

const NS = 'gitmirror-system';
const WORKLOAD_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'Job', 'CronJob']);

// biome-ignore lint/suspicious/noExplicitAny: manifests are walked field by field, each read asserted.
type Obj = Record<string, any>;

function podSpec(workload: Manifest): Obj {
  return (workload as Obj).spec.template.spec;
}

function workloads(manifests: Manifest[]): Manifest[] {
  return manifests.filter((m) => WORKLOAD_KINDS.has(m.kind));
}

function container(workload: Manifest, name: string): Obj {
  const found = podSpec(workload).containers.find((c: Obj) => c.name === name);
  assert.ok(found, `${workload.metadata.name} has no container ${name}`);
  return found;
}

function env(c: Obj): Map<string, Obj> {
  return new Map((c.env ?? []).map((e: Obj) => [e.name, e]));
}

function rulesOf(file: string): unknown {
  return parse(readFileSync(new URL(`../../operator/rbac/${file}`, import.meta.url), 'utf8')).rules;
}

const isFleetObject = (m: Manifest) => m.metadata.labels?.['app.kubernetes.io/component'] === 'cache';

describe('helm lint', () => {
  test('passes with the default values, strictly', async () => {
    const result = await helm(['lint', CHART_DIR, '--strict', '--kube-version', KUBE_VERSION]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  test('passes with the fleet off and with S3', async () => {
    for (const set of [
      ['fleet.enabled=false'],
      ['snapshotStore.bucket=mirrors', 'snapshotStore.credentials.existingSecret=s3-creds'],
    ]) {
      const args = ['lint', CHART_DIR, '--strict', '--kube-version', KUBE_VERSION];
      const result = await helm([...args, ...set.flatMap((s) => ['--set', s])]);
      assert.equal(result.code, 0, `${set.join(' ')}: ${result.stdout}${result.stderr}`);
    }
  });
});

describe('default values', async () => {
  const manifests = await renderChart({ namespace: NS });
  const operator = one(manifests, 'Deployment', 'gitmirror-operator');
  const fleet = one(manifests, 'Deployment', 'gitmirror-cache');

  test('the operator runs 2 replicas with leader election, probes on 8081 and resources', () => {
    assert.equal((operator as Obj).spec.replicas, 2);
    const c = container(operator, 'operator');
    assert.deepEqual(c.args, ['node', 'operator/src/main.ts']);
    const e = env(c);
    assert.equal(e.get('GITMIRROR_OPERATOR_LEADER_ELECT')?.value, 'true');
    assert.equal(e.get('POD_NAME')?.valueFrom.fieldRef.fieldPath, 'metadata.name');
    assert.equal(e.get('POD_NAMESPACE')?.valueFrom.fieldRef.fieldPath, 'metadata.namespace');
    assert.equal(e.get('GITMIRROR_OPERATOR_NAMESPACES')?.value, '');
    assert.equal(e.get('GITMIRROR_OPERATOR_ADMIN_TOKEN_SECRET')?.value, 'gitmirror-admin-token');
    assert.equal(e.get('GITMIRROR_OPERATOR_LISTEN')?.value, '0.0.0.0:8081');
    assert.equal(e.get('GITMIRROR_OPERATOR_WEBHOOK_LISTEN')?.value, '0.0.0.0:8082');
    assert.deepEqual(
      c.ports.map((p: Obj) => [p.name, p.containerPort]),
      [
        ['http-metrics', 8081],
        ['webhooks', 8082],
      ],
    );
    assert.equal(c.livenessProbe.httpGet.path, '/healthz');
    assert.equal(c.readinessProbe.httpGet.path, '/readyz');
    assert.equal(c.startupProbe.httpGet.path, '/healthz');
    for (const probe of [c.livenessProbe, c.readinessProbe, c.startupProbe])
      assert.equal(probe.httpGet.port, 'http-metrics');
    assert.ok(c.resources.requests.cpu && c.resources.requests.memory && c.resources.limits.memory);
    assert.equal((one(manifests, 'PodDisruptionBudget', 'gitmirror-operator') as Obj).spec.maxUnavailable, 1);
  });

  test('RBAC renders exactly the rules of operator/rbac, bound cluster-wide to the operator', () => {
    const clusterRole = one(manifests, 'ClusterRole') as Obj;
    assert.deepEqual(clusterRole.rules, rulesOf('cluster-role.yaml'));
    const leaderRole = one(manifests, 'Role') as Obj;
    assert.equal(leaderRole.metadata.namespace, NS);
    assert.deepEqual(leaderRole.rules, rulesOf('leader-election-role.yaml'));

    const sa = podSpec(operator).serviceAccountName;
    assert.ok(one(manifests, 'ServiceAccount', sa));
    const crb = one(manifests, 'ClusterRoleBinding') as Obj;
    assert.deepEqual(crb.roleRef, {
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'ClusterRole',
      name: clusterRole.metadata.name,
    });
    assert.deepEqual(crb.subjects, [{ kind: 'ServiceAccount', name: sa, namespace: NS }]);
    const rb = one(manifests, 'RoleBinding') as Obj;
    assert.equal(rb.roleRef.name, leaderRole.metadata.name);
    assert.deepEqual(rb.subjects, [{ kind: 'ServiceAccount', name: sa, namespace: NS }]);
  });

  test('no rule anywhere has a wildcard', () => {
    const rules = manifests
      .filter((m) => m.kind === 'ClusterRole' || m.kind === 'Role')
      .flatMap((m) => (m as Obj).rules);
    assert.ok(rules.length > 0);
    for (const rule of rules)
      for (const field of ['apiGroups', 'resources', 'verbs', 'resourceNames'])
        assert.ok(!(rule[field] ?? []).includes('*'), `${field} of ${JSON.stringify(rule)}`);
  });

  test('the fleet is a Deployment of labelled, gated pods that rolls without losing a warm pod', () => {
    const spec = (fleet as Obj).spec;
    assert.equal(spec.strategy.type, 'RollingUpdate');
    assert.equal(spec.strategy.rollingUpdate.maxUnavailable, 0);
    assert.ok(spec.strategy.rollingUpdate.maxSurge >= 1);
    assert.equal(spec.template.metadata.labels['gitmirror.dev/cache'], 'default');
    assert.deepEqual(podSpec(fleet).readinessGates, [{ conditionType: 'gitmirror.dev/warm' }]);
    assert.equal(podSpec(fleet).automountServiceAccountToken, false);
    // The selector must not select by the fleet label alone: other workloads may carry it.
    for (const [k, v] of Object.entries(spec.selector.matchLabels))
      assert.equal(spec.template.metadata.labels[k], v);
    assert.equal(spec.selector.matchLabels['gitmirror.dev/cache'], undefined);
  });

  test('the sidecar: probes on the git port, preStop sleep, grace above the shutdown timeout', () => {
    const c = container(fleet, 'gitmirror');
    assert.deepEqual(c.args, ['node', ...SIDECAR_NODE_FLAGS, 'sidecar/src/main.ts']);
    const ports = Object.fromEntries(c.ports.map((p: Obj) => [p.name, p.containerPort]));
    assert.deepEqual(ports, { http: 8080, 'gitmirror-admin': 9090 });
    assert.deepEqual(
      [c.startupProbe.httpGet, c.livenessProbe.httpGet, c.readinessProbe.httpGet],
      [
        { path: '/healthz', port: 'http' },
        { path: '/healthz', port: 'http' },
        { path: '/readyz', port: 'http' },
      ],
    );
    const sleep = c.lifecycle.preStop.exec.command;
    assert.equal(sleep[0], 'sleep');
    const shutdown = env(c).get('GITMIRROR_SHUTDOWN_TIMEOUT')?.value;
    assert.match(shutdown, /^\d+s$/);
    assert.ok(
      podSpec(fleet).terminationGracePeriodSeconds > Number(sleep[1]) + Number.parseInt(shutdown, 10),
      'SIGKILL must not cut the drain short',
    );
  });

  test('the sidecar: data dir on the data volume, writable HOME and /tmp, admin token mounted', () => {
    const c = container(fleet, 'gitmirror');
    const e = env(c);
    const mounts = new Map(c.volumeMounts.map((m: Obj) => [m.name, m]));
    const volumes = new Map(podSpec(fleet).volumes.map((v: Obj) => [v.name, v]));
    assert.equal(e.get('GITMIRROR_DATA_DIR')?.value, (mounts.get('data') as Obj).mountPath);
    assert.ok((volumes.get('data') as Obj).emptyDir.sizeLimit, 'emptyDir with a size limit by default');
    assert.equal(e.get('HOME')?.value, '/tmp');
    assert.equal((mounts.get('tmp') as Obj).mountPath, '/tmp');
    assert.ok((volumes.get('tmp') as Obj).emptyDir);

    const tokenFile = e.get('GITMIRROR_ADMIN_TOKEN_FILE')?.value as string;
    const tokenMount = mounts.get('admin-token') as Obj;
    assert.equal(tokenMount.readOnly, true);
    // A subPath mount would freeze the file: rotation must reach the sidecar.
    assert.equal(tokenMount.subPath, undefined);
    const secret = (volumes.get('admin-token') as Obj).secret;
    assert.equal(secret.secretName, 'gitmirror-admin-token');
    assert.notEqual(secret.optional, true, 'a sidecar without its token would lock the operator out');
    const item = secret.items.find((i: Obj) => `${tokenMount.mountPath}/${i.path}` === tokenFile);
    assert.equal(item?.key, 'token', 'the key the operator writes (operator/src/sidecar/admin-token.ts)');
    // No snapshot store configured: the sidecar's own default, no AWS settings.
    assert.equal(e.get('GITMIRROR_SNAPSHOT_STORE'), undefined);
    assert.ok(![...e.keys()].some((k) => k.startsWith('AWS_')));
    // The operator configures every mirror of the fleet; other repositories pass through.
    assert.equal(e.get('GITMIRROR_MAX_ON_DEMAND_MIRRORS')?.value, '0');
  });

  test('the git Service and the PDB select the fleet', () => {
    const selector = (fleet as Obj).spec.selector.matchLabels;
    const service = one(manifests, 'Service', 'gitmirror-cache') as Obj;
    assert.deepEqual(service.spec.selector, selector);
    assert.deepEqual(
      service.spec.ports.map((p: Obj) => [p.port, p.targetPort]),
      [[8080, 'http']],
    );
    const pdb = one(manifests, 'PodDisruptionBudget', 'gitmirror-cache') as Obj;
    assert.deepEqual(pdb.spec.selector.matchLabels, selector);
    assert.equal(pdb.spec.maxUnavailable, 1);
  });

  test('every pod and container of every workload is restricted', () => {
    const all = workloads(manifests);
    assert.equal(all.length, 2);
    for (const workload of all) {
      const pod = podSpec(workload);
      const where = workload.metadata.name;
      assert.equal(pod.securityContext.runAsNonRoot, true, where);
      assert.ok(Number.isInteger(pod.securityContext.runAsUser) && pod.securityContext.runAsUser > 0, where);
      assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault', where);
      assert.equal(pod.hostNetwork ?? false, false, where);
      assert.equal(pod.hostPID ?? false, false, where);
      const containers = [...(pod.initContainers ?? []), ...pod.containers];
      for (const c of containers) {
        const sc = c.securityContext;
        const at = `${where}/${c.name}`;
        assert.equal(sc.runAsNonRoot, true, at);
        assert.ok(Number.isInteger(sc.runAsUser) && sc.runAsUser > 0, at);
        assert.equal(sc.allowPrivilegeEscalation, false, at);
        assert.equal(sc.readOnlyRootFilesystem, true, at);
        assert.equal(sc.privileged, false, at);
        assert.deepEqual(sc.capabilities, { drop: ['ALL'] }, at);
        assert.equal(sc.seccompProfile.type, 'RuntimeDefault', at);
        assert.ok(
          c.volumeMounts.some((m: Obj) => m.mountPath === '/tmp'),
          `${at}: scratch space on a read-only root`,
        );
      }
      for (const v of pod.volumes ?? []) assert.equal(v.hostPath, undefined, `${where}: hostPath volume`);
    }
  });

  test('no ServiceMonitor where the Prometheus operator API is not served', () => {
    assert.ok(!manifests.some((m) => m.kind === 'ServiceMonitor'));
  });

  test('CRDs ship from crds/, first and unchanged, when helm includes them', async () => {
    const withCrds = await renderChart({ namespace: NS, includeCrds: true });
    assert.equal(withCrds[0]?.kind, 'CustomResourceDefinition');
    const source = parse(readFileSync(new URL('../../crds/gitmirror.yaml', import.meta.url), 'utf8'));
    assert.deepEqual(withCrds[0], source);
  });
});

describe('fleet off', async () => {
  const manifests = await renderChart({ namespace: NS, values: { fleet: { enabled: false } } });

  test('renders the operator and nothing of the fleet', () => {
    assert.deepEqual(
      manifests.filter(isFleetObject).map((m) => `${m.kind}/${m.metadata.name}`),
      [],
    );
    assert.deepEqual(
      workloads(manifests).map((m) => m.metadata.name),
      ['gitmirror-operator'],
    );
    assert.ok(!manifests.some((m) => m.kind === 'PodDisruptionBudget' && m.metadata.name.includes('cache')));
    assert.ok(one(manifests, 'ClusterRole'));
  });

  test('fleet objects exist in the default render, so the assertion above can fail', async () => {
    const defaults = await renderChart({ namespace: NS });
    assert.deepEqual(
      defaults
        .filter(isFleetObject)
        .map((m) => m.kind)
        .sort(),
      ['Deployment', 'PodDisruptionBudget', 'Service', 'Service', 'ServiceAccount'],
    );
  });
});

describe('S3 with an existing Secret', async () => {
  const values = {
    snapshotStore: {
      bucket: 'mirrors',
      prefix: '/ci/gitmirror/',
      region: 'eu-west-1',
      endpoint: 'http://minio.storage:9000',
      forcePathStyle: true,
      credentials: { existingSecret: 's3-creds', sessionTokenKey: 'session' },
    },
  };
  const manifests = await renderChart({ namespace: NS, values });
  const c = container(one(manifests, 'Deployment', 'gitmirror-cache'), 'gitmirror');
  const e = env(c);

  test('the store URL, region and endpoint come from the values', () => {
    assert.equal(e.get('GITMIRROR_SNAPSHOT_STORE')?.value, 's3://mirrors/ci/gitmirror?forcePathStyle=true');
    assert.equal(e.get('AWS_REGION')?.value, 'eu-west-1');
    assert.equal(e.get('AWS_ENDPOINT_URL_S3')?.value, 'http://minio.storage:9000');
  });

  test('credentials are secretKeyRefs into the existing Secret, never values', () => {
    assert.deepEqual(e.get('AWS_ACCESS_KEY_ID')?.valueFrom, {
      secretKeyRef: { name: 's3-creds', key: 'AWS_ACCESS_KEY_ID' },
    });
    assert.deepEqual(e.get('AWS_SECRET_ACCESS_KEY')?.valueFrom, {
      secretKeyRef: { name: 's3-creds', key: 'AWS_SECRET_ACCESS_KEY' },
    });
    assert.deepEqual(e.get('AWS_SESSION_TOKEN')?.valueFrom, {
      secretKeyRef: { name: 's3-creds', key: 'session' },
    });
    for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN'])
      assert.equal(e.get(name)?.value, undefined);
    // The chart never creates a Secret: neither S3 credentials nor the operator's admin token.
    assert.ok(!manifests.some((m) => m.kind === 'Secret'));
  });

  test('the operator gets no S3 settings: it never touches object storage', () => {
    const op = container(one(manifests, 'Deployment', 'gitmirror-operator'), 'operator');
    assert.ok(![...env(op).keys()].some((k) => k.startsWith('AWS_') || k === 'GITMIRROR_SNAPSHOT_STORE'));
  });

  test('without path style or prefix the URL is the bare bucket', async () => {
    const bare = await renderChart({ values: { snapshotStore: { bucket: 'mirrors', prefix: '' } } });
    const store = env(container(one(bare, 'Deployment', 'gitmirror-cache'), 'gitmirror')).get(
      'GITMIRROR_SNAPSHOT_STORE',
    );
    assert.equal(store?.value, 's3://mirrors');
  });
});

describe('other configurations', () => {
  test('workload identity: IRSA annotation on the fleet ServiceAccount and no static keys', async () => {
    const arn = 'arn:aws:iam::123456789012:role/gitmirror';
    const manifests = await renderChart({
      namespace: NS,
      values: {
        snapshotStore: { bucket: 'mirrors', region: 'us-east-2' },
        fleet: { serviceAccount: { annotations: { 'eks.amazonaws.com/role-arn': arn } } },
      },
    });
    const fleet = one(manifests, 'Deployment', 'gitmirror-cache');
    const sa = one(manifests, 'ServiceAccount', podSpec(fleet).serviceAccountName) as Obj;
    assert.equal(sa.metadata.annotations['eks.amazonaws.com/role-arn'], arn);
    const e = env(container(fleet, 'gitmirror'));
    assert.equal(e.get('GITMIRROR_SNAPSHOT_STORE')?.value, 's3://mirrors/gitmirror');
    assert.equal(e.get('AWS_ACCESS_KEY_ID'), undefined);
  });

  test('watchNamespaces: a RoleBinding of the ClusterRole per namespace and no ClusterRoleBinding', async () => {
    const manifests = await renderChart({
      namespace: NS,
      values: { operator: { watchNamespaces: ['team-a', NS] } },
    });
    assert.ok(!manifests.some((m) => m.kind === 'ClusterRoleBinding'));
    const clusterRole = one(manifests, 'ClusterRole');
    const bindings = manifests.filter(
      (m) => m.kind === 'RoleBinding' && (m as Obj).roleRef.kind === 'ClusterRole',
    ) as Obj[];
    assert.deepEqual(bindings.map((b) => b.metadata.namespace).sort(), [NS, 'team-a'].sort());
    for (const b of bindings) assert.equal(b.roleRef.name, clusterRole.metadata.name);
    const e = env(container(one(manifests, 'Deployment', 'gitmirror-operator'), 'operator'));
    assert.equal(e.get('GITMIRROR_OPERATOR_NAMESPACES')?.value, `team-a,${NS}`);
  });

  test('watchNamespaces without the release namespace is refused while the fleet is on', async () => {
    const refused = await templateChart({
      namespace: NS,
      values: { operator: { watchNamespaces: ['team-a'] } },
    });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /watchNamespaces must include the release namespace/);
    const fleetOff = await templateChart({
      namespace: NS,
      values: { operator: { watchNamespaces: ['team-a'] }, fleet: { enabled: false } },
    });
    assert.equal(fleetOff.code, 0, fleetOff.stderr);
  });

  test('several operator replicas without leader election are refused', async () => {
    const result = await templateChart({ values: { operator: { leaderElection: false } } });
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /leaderElection=false needs operator.replicas=1/);
    const single = await renderChart({ values: { operator: { leaderElection: false, replicas: 1 } } });
    assert.ok(!single.some((m) => m.kind === 'PodDisruptionBudget' && m.metadata.name.includes('operator')));
  });

  test('ephemeral data volume: a claim per pod with the size and class asked for', async () => {
    const manifests = await renderChart({
      values: { fleet: { dataVolume: { type: 'ephemeral', size: '100Gi', storageClassName: 'fast' } } },
    });
    const data = podSpec(one(manifests, 'Deployment', 'gitmirror-cache')).volumes.find(
      (v: Obj) => v.name === 'data',
    );
    assert.equal(data.emptyDir, undefined);
    const claim = data.ephemeral.volumeClaimTemplate.spec;
    assert.deepEqual(claim.accessModes, ['ReadWriteOnce']);
    assert.equal(claim.storageClassName, 'fast');
    assert.equal(claim.resources.requests.storage, '100Gi');
  });

  test('the pack cache: a tenth of the data volume unless set, "0" turns it off, the TTL as given', async () => {
    const cacheEnv = async (fleet: Obj) => {
      const manifests = await renderChart({ values: { fleet } });
      const e = env(container(one(manifests, 'Deployment', 'gitmirror-cache'), 'gitmirror'));
      return [e.get('GITMIRROR_PACK_CACHE_MAX_BYTES')?.value, e.get('GITMIRROR_PACK_CACHE_TTL')?.value];
    };
    assert.deepEqual(await cacheEnv({}), [String(2 * 2 ** 30), '5m'], 'a tenth of the default 20Gi');
    const ephemeral = { type: 'ephemeral', size: '1.5Ti' };
    assert.deepEqual((await cacheEnv({ dataVolume: ephemeral }))[0], String(Math.floor(0.15 * 2 ** 40)));
    assert.deepEqual((await cacheEnv({ dataVolume: { type: 'emptyDir', size: '500G' } }))[0], '50000000000');
    assert.deepEqual(await cacheEnv({ packCache: { maxBytes: '4GiB', ttl: '90s' } }), ['4GiB', '90s']);
    assert.deepEqual((await cacheEnv({ packCache: { maxBytes: 0 } }))[0], '0');
    for (const set of ['fleet.packCache.maxBytes=lots', 'fleet.packCache.ttl=5']) {
      const result = await templateChart({ set: [set] });
      assert.notEqual(result.code, 0, `${set} was accepted`);
    }
    const unknownUnit = await templateChart({
      values: { fleet: { dataVolume: { type: 'emptyDir', size: '2e9' } } },
    });
    assert.notEqual(unknownUnit.code, 0);
    assert.match(unknownUnit.stderr, /fleet.dataVolume.size "2e9": .* fleet.packCache.maxBytes/);
  });

  test('the data budget: the volume size less 10% headroom, or as given', async () => {
    const budgetFor = async (dataVolume: Obj) => {
      const manifests = await renderChart({ values: { fleet: { dataVolume } } });
      return env(container(one(manifests, 'Deployment', 'gitmirror-cache'), 'gitmirror')).get(
        'GITMIRROR_DATA_BUDGET',
      )?.value;
    };
    assert.equal(await budgetFor({}), String(Math.floor(20 * 1024 ** 3 * 0.9)), 'the default 20Gi');
    assert.equal(await budgetFor({ size: '1.5Gi' }), String(Math.floor(1.5 * 1024 ** 3 * 0.9)));
    assert.equal(await budgetFor({ size: '500M', headroomPercent: 20 }), '400000000');
    assert.equal(await budgetFor({ size: 2 * 1024 ** 3 }), String(Math.floor(2 * 1024 ** 3 * 0.9)));
    assert.equal(await budgetFor({ type: 'ephemeral', size: '100Gi' }), String(90 * 1024 ** 3));
    assert.equal(await budgetFor({ budget: '3GiB' }), '3GiB');
    const odd = await templateChart({ set: ['fleet.dataVolume.size=1e9'] });
    assert.notEqual(odd.code, 0);
    assert.match(odd.stderr, /fleet.dataVolume.size "1e9": .* set fleet.dataVolume.budget/);
  });

  test('ServiceMonitors only where monitoring.coreos.com/v1 is served, and only when enabled', async () => {
    const withApi = await renderChart({ namespace: NS, apiVersions: ['monitoring.coreos.com/v1'] });
    const monitors = withApi.filter((m) => m.kind === 'ServiceMonitor') as Obj[];
    assert.equal(monitors.length, 2);
    for (const monitor of monitors) {
      // Each must select a Service that exposes the port it scrapes.
      const services = withApi.filter(
        (m) =>
          m.kind === 'Service' &&
          Object.entries(monitor.spec.selector.matchLabels).every(([k, v]) => m.metadata.labels?.[k] === v),
      ) as Obj[];
      const port = monitor.spec.endpoints[0].port;
      assert.ok(
        services.some((s) => s.spec.ports.some((p: Obj) => p.name === port)),
        `${monitor.metadata.name}: no Service with port ${port}`,
      );
    }
    const disabled = await renderChart({
      apiVersions: ['monitoring.coreos.com/v1'],
      values: { metrics: { serviceMonitor: { enabled: false } } },
    });
    assert.ok(!disabled.some((m) => m.kind === 'ServiceMonitor'));
  });

  test('the Grafana dashboard ConfigMap carries dashboards/gitmirror.json', async () => {
    const manifests = await renderChart({ values: { metrics: { grafanaDashboard: { enabled: true } } } });
    const cm = manifests.find((m) => m.kind === 'ConfigMap') as Obj;
    assert.equal(cm.metadata.labels.grafana_dashboard, '1');
    assert.deepEqual(
      JSON.parse(cm.data['gitmirror.json']),
      JSON.parse(readFileSync(`${CHART_DIR}/dashboards/gitmirror.json`, 'utf8')),
    );
  });

  test('the restricted security context holds under every configuration rendered here', async () => {
    for (const values of [
      { fleet: { dataVolume: { type: 'ephemeral' } } },
      { securityContext: { runAsUser: 2000, runAsGroup: 2000, fsGroup: 2000 } },
    ]) {
      for (const w of workloads(await renderChart({ values }))) {
        for (const c of podSpec(w).containers) {
          assert.equal(c.securityContext.readOnlyRootFilesystem, true);
          assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
        }
      }
    }
  });
});

describe('NOTES.txt', () => {
  test('gives the insteadOf line for the Service and a sample GitMirror for the fleet', async () => {
    const notes = await renderNotes({ namespace: NS, values: { fleet: { name: 'ci' } } });
    const service = 'gitmirror-cache';
    assert.ok(
      notes.includes(
        `git config --global url."http://${service}.${NS}.svc:8080/git/github.com/".insteadOf https://github.com/`,
      ),
      notes,
    );
    const manifests = await renderChart({ namespace: NS, values: { fleet: { name: 'ci' } } });
    assert.equal((one(manifests, 'Service', service) as Obj).spec.ports[0].port, 8080);
    const sample = /<<'YAML'\n([\s\S]*?)\nYAML\n/.exec(notes)?.[1];
    assert.ok(sample, 'a heredoc with the sample, terminator at the start of a line');
    const gm = parse(sample);
    assert.equal(gm.apiVersion, 'gitmirror.dev/v1alpha1');
    assert.equal(gm.kind, 'GitMirror');
    assert.equal(gm.spec.cache, 'ci');
    assert.match(gm.spec.url, /^https:\/\//);
  });

  test('without the fleet, points at the recipe instead of a Service', async () => {
    const notes = await renderNotes({ values: { fleet: { enabled: false } } });
    assert.doesNotMatch(notes, /insteadOf/);
    assert.match(notes, /The sidecar next to any workload/);
  });
});

describe('push webhooks', () => {
  test('a Service routes to the webhook port of every operator replica; no Ingress unless asked', async () => {
    const manifests = await renderChart({ namespace: NS });
    const service = one(manifests, 'Service', 'gitmirror-operator-webhooks') as Obj;
    assert.deepEqual(
      service.spec.selector,
      (one(manifests, 'Deployment', 'gitmirror-operator') as Obj).spec.selector.matchLabels,
    );
    assert.deepEqual(service.spec.ports, [
      { name: 'webhooks', port: 80, targetPort: 'webhooks', protocol: 'TCP' },
    ]);
    assert.equal(service.spec.type, 'ClusterIP');
    assert.equal(manifests.filter((m) => m.kind === 'Ingress').length, 0);
  });

  test('the Ingress routes only /webhooks, to that Service, with the class, host and TLS given', async () => {
    const manifests = await renderChart({
      namespace: NS,
      values: {
        operator: {
          webhooks: {
            ingress: {
              enabled: true,
              className: 'nginx',
              host: 'hooks.example.com',
              annotations: { 'cert-manager.io/cluster-issuer': 'letsencrypt' },
              tls: [{ hosts: ['hooks.example.com'], secretName: 'hooks-tls' }],
            },
          },
        },
      },
    });
    const ingress = one(manifests, 'Ingress', 'gitmirror-operator-webhooks') as Obj;
    assert.equal(ingress.spec.ingressClassName, 'nginx');
    assert.equal(ingress.metadata.annotations['cert-manager.io/cluster-issuer'], 'letsencrypt');
    assert.deepEqual(ingress.spec.tls, [{ hosts: ['hooks.example.com'], secretName: 'hooks-tls' }]);
    assert.deepEqual(ingress.spec.rules, [
      {
        host: 'hooks.example.com',
        http: {
          paths: [
            {
              path: '/webhooks',
              pathType: 'Prefix',
              backend: { service: { name: 'gitmirror-operator-webhooks', port: { name: 'webhooks' } } },
            },
          ],
        },
      },
    ]);
  });

  test('turned off: no receiver, no port, no Service, no Ingress', async () => {
    const manifests = await renderChart({
      namespace: NS,
      values: { operator: { webhooks: { enabled: false, ingress: { enabled: true } } } },
    });
    const c = container(one(manifests, 'Deployment', 'gitmirror-operator'), 'operator');
    assert.equal(env(c).get('GITMIRROR_OPERATOR_WEBHOOK_LISTEN')?.value, 'off');
    assert.deepEqual(
      c.ports.map((p: Obj) => p.name),
      ['http-metrics'],
    );
    assert.equal(manifests.filter((m) => m.metadata.name.endsWith('-webhooks')).length, 0);
  });
});

describe('values schema', () => {
  test('an unknown key is rejected, at the top and nested', async () => {
    for (const set of ['unknownKey=1', 'fleet.dataVolume.sizeLimit=1Gi', 'operator.replica=3']) {
      const result = await templateChart({ set: [set] });
      assert.notEqual(result.code, 0, `${set} was accepted`);
      assert.match(result.stderr, /additional properties .* not allowed/, set);
    }
  });

  test('a wrong type or value is rejected', async () => {
    for (const set of [
      'operator.replicas=0',
      'fleet.dataVolume.type=hostPath',
      'securityContext.runAsUser=0',
      'snapshotStore.bucket=Not_A_Bucket',
      'fleet.maxSurge=0',
      'operator.webhooks.service.type=ExternalName',
      'operator.webhooks.ingress.host=Hooks_Example',
      'fleet.dataVolume.budget=lots',
      'fleet.dataVolume.headroomPercent=95',
    ]) {
      const result = await templateChart({ set: [set] });
      assert.notEqual(result.code, 0, `${set} was accepted`);
    }
  });
});
