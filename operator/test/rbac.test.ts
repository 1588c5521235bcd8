import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { parse } from 'yaml';

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

function rules(file: string): Rule[] {
  return parse(readFileSync(new URL(`../rbac/${file}`, import.meta.url), 'utf8')).rules;
}

/** group/resource:verb[@name] for every permission a rule set grants. */
function grants(list: Rule[]): string[] {
  return list
    .flatMap((r) =>
      r.apiGroups.flatMap((g) =>
        r.resources.flatMap((res) =>
          r.verbs.flatMap((v) => (r.resourceNames ?? ['']).map((n) => `${g}/${res}:${v}${n ? `@${n}` : ''}`)),
        ),
      ),
    )
    .sort();
}

describe('operator RBAC', () => {
  test('the ClusterRole grants exactly what the informers and KubeApi use', () => {
    assert.deepEqual(grants(rules('cluster-role.yaml')), [
      '/pods/status:patch',
      '/pods:list',
      '/pods:watch',
      '/secrets:create',
      '/secrets:get',
      'events.k8s.io/events:create',
      'gitmirror.dev/gitmirrors/status:patch',
      'gitmirror.dev/gitmirrors:list',
      'gitmirror.dev/gitmirrors:patch',
      'gitmirror.dev/gitmirrors:watch',
    ]);
  });

  test('the leader-election Role renews only the operator Lease', () => {
    assert.deepEqual(grants(rules('leader-election-role.yaml')), [
      'coordination.k8s.io/leases:create',
      'coordination.k8s.io/leases:get@gitmirror-operator',
      'coordination.k8s.io/leases:update@gitmirror-operator',
    ]);
  });

  test('no wildcards anywhere, and Secrets are never listed or watched', () => {
    const all = grants([...rules('cluster-role.yaml'), ...rules('leader-election-role.yaml')]);
    assert.ok(all.every((g) => !g.includes('*')));
    assert.ok(!all.some((g) => /secrets:(list|watch)/.test(g)));
  });
});
