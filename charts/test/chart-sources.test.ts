import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { isMap, isScalar, type Pair, parse, parseDocument, type YAMLMap } from 'yaml';
import { OPTIONS } from '../../operator/src/config/config.ts';

/**
 * The chart's files that must agree with the rest of the repository, checked without helm
 * (the rendering itself is tested with the real helm binary in e2e/chart).
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHART = join(ROOT, 'charts/gitmirror');
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

describe('chart copies of the one sources', () => {
  test('crds/ in the chart is byte-identical to crds/', () => {
    assert.equal(
      read('charts/gitmirror/crds/gitmirror.yaml'),
      read('crds/gitmirror.yaml'),
      'run: cp crds/gitmirror.yaml charts/gitmirror/crds/',
    );
  });

  test('the chart RBAC files are byte-identical to operator/rbac', () => {
    for (const file of ['cluster-role.yaml', 'leader-election-role.yaml']) {
      assert.equal(
        read(`charts/gitmirror/files/rbac/${file}`),
        read(`operator/rbac/${file}`),
        `run: cp operator/rbac/${file} charts/gitmirror/files/rbac/`,
      );
    }
  });

  test("the leader-election Role names the operator's default Lease, which the chart does not change", () => {
    const role = parse(read('operator/rbac/leader-election-role.yaml'));
    const named = role.rules.flatMap((r: { resourceNames?: string[] }) => r.resourceNames ?? []);
    const lease = OPTIONS['leader-election-id']!.default({});
    assert.deepEqual([...new Set(named)], [lease]);
    assert.doesNotMatch(
      read('charts/gitmirror/templates/operator/deployment.yaml'),
      /LEASE_NAME|leader-election-id/,
    );
  });

  test("the chart's default admin-token Secret name is the operator's", () => {
    const values = parse(read('charts/gitmirror/values.yaml'));
    assert.equal(values.adminToken.secretName, OPTIONS['admin-token-secret']!.default({}));
  });

  test("appVersion, the default image tag, is package.json's version", () => {
    const chart = parse(read('charts/gitmirror/Chart.yaml'));
    assert.equal(chart.appVersion, JSON.parse(read('package.json')).version);
  });
});

describe('values.yaml and values.schema.json', () => {
  const schema = JSON.parse(read('charts/gitmirror/values.schema.json'));
  const values = parse(read('charts/gitmirror/values.yaml'));

  test('values.yaml satisfies the schema', () => {
    const validate = new Ajv({ allErrors: true, strict: false }).compile(schema);
    assert.ok(validate(values), JSON.stringify(validate.errors, null, 2));
  });

  test('every object in the schema rejects unknown keys, and knows every key of values.yaml', () => {
    type Node = { type?: string; properties?: Record<string, Node>; additionalProperties?: unknown };
    const walk = (node: Node, value: unknown, path: string) => {
      if (!node.properties) return;
      assert.equal(
        node.additionalProperties,
        false,
        `${path || '(root)'} must set additionalProperties: false`,
      );
      const known = Object.keys(node.properties).sort();
      const present = Object.keys((value ?? {}) as object).sort();
      assert.deepEqual(present, known, `${path || '(root)'}: values.yaml keys and schema properties differ`);
      for (const key of known)
        walk(node.properties[key]!, (value as Record<string, unknown>)?.[key], `${path}.${key}`);
    };
    walk(schema, values, '');
  });

  test('every value in values.yaml is documented by a comment', () => {
    const doc = parseDocument(readFileSync(join(CHART, 'values.yaml'), 'utf8'));
    const undocumented: string[] = [];
    // Sections (objects the schema lists properties of) are documented through their keys; any
    // other value (scalar, list, free-form map such as resources) needs a comment of its own.
    // The first key of a map carries its comment on the map node (how `yaml` attaches it).
    type Node = { properties?: Record<string, Node> };
    const check = (map: YAMLMap, node: Node, path: string) => {
      map.items.forEach((item, i) => {
        const pair = item as Pair;
        const key = isScalar(pair.key) ? String(pair.key.value) : '?';
        const sub = node.properties?.[key] ?? {};
        if (sub.properties && isMap(pair.value)) {
          check(pair.value as YAMLMap, sub, `${path}${key}.`);
          return;
        }
        const comment =
          (pair.key as { commentBefore?: string }).commentBefore ?? (i === 0 ? map.commentBefore : undefined);
        if (!comment?.trim()) undocumented.push(`${path}${key}`);
      });
    };
    check(doc.contents as YAMLMap, schema, '');
    assert.deepEqual(undocumented, []);
  });
});

describe('Grafana dashboard', () => {
  const dashboard = JSON.parse(read('charts/gitmirror/dashboards/gitmirror.json'));
  const exprs: string[] = dashboard.panels.flatMap((p: { targets?: { expr: string }[] }) =>
    (p.targets ?? []).map((t) => t.expr),
  );

  test('queries only metrics the sidecar and the operator export', () => {
    const code = [
      read('sidecar/src/metrics/sidecar-metrics.ts'),
      read('operator/src/runtime/metrics.ts'),
    ].join('\n');
    const names = new Set(exprs.flatMap((e) => [...e.matchAll(/\b([a-z_]+)(?=\{)/g)].map((m) => m[1]!)));
    assert.ok(names.size >= 15, `${names.size} metrics`);
    for (const name of names) {
      // Histograms are exported as <name>_bucket; prom-client's process metrics carry the sidecar prefix.
      const base = name.replace(/_bucket$/, '');
      const exported =
        code.includes(`'${base}'`) ||
        (base.startsWith('gitmirror_process_') && code.includes("prefix: 'gitmirror_'"));
      assert.ok(exported, `the dashboard queries ${name}, which nothing exports`);
    }
  });

  test('covers both the sidecar and the operator, with a data source variable', () => {
    assert.ok(exprs.some((e) => e.includes('gitmirror_http_requests_total')));
    assert.ok(exprs.some((e) => e.includes('controller_runtime_reconcile_total')));
    assert.ok(dashboard.templating.list.some((v: { type: string }) => v.type === 'datasource'));
    const ids = dashboard.panels.map((p: { id: number }) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  });
});
