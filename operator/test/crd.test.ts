import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { type CelInput, isCelError, run } from '@bufbuild/cel';
import { Ajv } from 'ajv';
import { parse } from 'yaml';
import {
  CRD_PATH,
  crdSchema,
  renderCrdTypes,
  type SchemaNode,
  TYPES_PATH,
} from '../scripts/generate-crd-types.ts';

const crdText = readFileSync(CRD_PATH, 'utf8');
const crd = parse(crdText);
const schema = crdSchema(crd);

interface Rule {
  rule: string;
  message?: string;
  messageExpression?: string;
}

/** Every schema node with its path, depth first. */
function* nodes(node: SchemaNode, path = ''): Generator<[string, SchemaNode]> {
  yield [path, node];
  for (const [name, child] of Object.entries(node.properties ?? {})) yield* nodes(child, `${path}.${name}`);
  if (node.items) yield* nodes(node.items, `${path}[]`);
}

/** JSON as CEL sees it under this schema: objects are maps, integers are ints (bigint). */
function toCel(value: unknown, node: SchemaNode): CelInput {
  if (node.type === 'integer' && typeof value === 'number') return BigInt(value);
  if (Array.isArray(value)) return value.map((v) => toCel(v, node.items ?? {}));
  if (value && typeof value === 'object') {
    return new Map(Object.entries(value).map(([k, v]) => [k, toCel(v, node.properties?.[k] ?? {})]));
  }
  return value as CelInput;
}

/** The x-kubernetes-validations messages that fail, the way the API server evaluates them. */
function celErrors(node: SchemaNode, value: unknown, old: unknown, path = ''): string[] {
  if (value === undefined) return [];
  const errors: string[] = [];
  for (const r of (node['x-kubernetes-validations'] as Rule[] | undefined) ?? []) {
    const transition = r.rule.includes('oldSelf');
    if (transition && old === undefined) continue;
    const result = run(r.rule, { self: toCel(value, node), oldSelf: toCel(old, node) });
    if (result !== true)
      errors.push(isCelError(result) ? `${path}: ${r.message} (${result.message})` : `${path}: ${r.message}`);
  }
  for (const [name, child] of Object.entries(node.properties ?? {})) {
    const sub = (v: unknown) =>
      v && typeof v === 'object' ? (v as Record<string, unknown>)[name] : undefined;
    errors.push(...celErrors(child, sub(value), sub(old), `${path}.${name}`));
  }
  return errors;
}

const ajv = new Ajv({ strict: false, useDefaults: true, validateFormats: false, allErrors: true });
const validateSchema = ajv.compile(schema);

/** Admission as the API server does it: defaults, the structural schema, then CEL. */
function admit(spec: Record<string, unknown>, oldSpec?: Record<string, unknown>) {
  const obj = structuredClone({
    apiVersion: 'gitmirror.dev/v1alpha1',
    kind: 'GitMirror',
    metadata: {},
    spec,
  });
  const old = oldSpec && structuredClone({ spec: oldSpec });
  if (old) validateSchema(old);
  if (!validateSchema(obj)) {
    return { obj, errors: (validateSchema.errors ?? []).map((e) => `${e.instancePath} ${e.message}`) };
  }
  return { obj, errors: celErrors(schema, obj, old) };
}

const URL = 'https://github.com/org/repo.git';

describe('GitMirror CRD', () => {
  test('is namespaced, v1alpha1 with a status subresource, short name gm', () => {
    assert.equal(crd.metadata.name, 'gitmirrors.gitmirror.dev');
    assert.equal(crd.spec.scope, 'Namespaced');
    assert.deepEqual(crd.spec.names.shortNames, ['gm']);
    const [version] = crd.spec.versions;
    assert.equal(version.name, 'v1alpha1');
    assert.deepEqual(version.subresources, { status: {} });
    const columns = version.additionalPrinterColumns.map(
      (c: { name: string; jsonPath: string }) => `${c.name}=${c.jsonPath}`,
    );
    for (const expected of [
      'URL=.spec.url',
      'Ready=.status.conditions[?(@.type=="Ready")].status',
      'Warm=.status.replicas.warm',
      'Snapshot=.status.latestSnapshot.createdAt',
      'Age=.metadata.creationTimestamp',
    ]) {
      assert.ok(columns.includes(expected), `printer column ${expected}`);
    }
  });

  test('is structural: every node has a type', () => {
    for (const [path, node] of nodes(schema)) assert.ok(node.type, `${path || '<root>'} has no type`);
  });

  test('every CEL rule has a message, and every rule on a string bounds its length', () => {
    let rules = 0;
    for (const [path, node] of nodes(schema)) {
      for (const r of (node['x-kubernetes-validations'] as Rule[] | undefined) ?? []) {
        rules++;
        assert.ok(
          r.message && r.message.length > 20,
          `${path}: rule "${r.rule}" needs a message a user understands`,
        );
      }
      if (node['x-kubernetes-validations'] && node.type === 'string')
        assert.ok(node.maxLength, `${path} needs maxLength`);
    }
    assert.ok(rules >= 10);
  });

  test('conditions are a map list keyed by type', () => {
    const conditions = schema.properties?.status?.properties?.conditions;
    assert.equal(conditions?.['x-kubernetes-list-type'], 'map');
    assert.deepEqual(conditions?.['x-kubernetes-list-map-keys'], ['type']);
  });

  test('the TypeScript types are generated from this CRD and up to date', () => {
    assert.equal(
      readFileSync(TYPES_PATH, 'utf8'),
      renderCrdTypes(crdText),
      'run: npx node operator/scripts/generate-crd-types.ts',
    );
  });

  test('a minimal spec is accepted and gets every default', () => {
    const { obj, errors } = admit({ url: URL });
    assert.deepEqual(errors, []);
    assert.deepEqual(obj.spec, {
      url: URL,
      cache: 'default',
      fetchInterval: '5m',
      snapshot: { interval: '1h', retain: 3 },
      warmup: { timeout: '10m', onTimeout: 'Open' },
      lfs: { prefetch: 'None' },
    });
  });

  test('a full spec is accepted', () => {
    const { errors } = admit({
      url: 'http://git.internal:8080/team/tool',
      cache: 'ci-fleet',
      fetchInterval: '1h30m',
      snapshot: { interval: '5m', retain: 2 },
      credentialsSecretRef: { name: 'upstream' },
      webhookSecretRef: { name: 'push-webhook.v2' },
      access: 'Private',
      warmup: { timeout: '30s', onTimeout: 'Closed' },
      lfs: { prefetch: 'AllRefs' },
    });
    assert.deepEqual(errors, []);
  });

  const rejected: [string, Record<string, unknown>, RegExp][] = [
    ['no url', {}, /must have required property 'url'/],
    ['ssh url', { url: 'git@github.com:org/repo.git' }, /must start with https:\/\/ or http:\/\//],
    ['ssh scheme', { url: 'ssh://github.com/org/repo.git' }, /must start with https:\/\/ or http:\/\//],
    [
      'credentials in the url',
      { url: 'https://user:pw@github.com/org/repo.git' },
      /must not contain credentials/,
    ],
    ['token in the url', { url: 'https://ghp_abc@github.com/org/repo.git' }, /must not contain credentials/],
    ['no repository path', { url: 'https://github.com/' }, /must name a repository path/],
    ['a query', { url: 'https://github.com/org/repo.git?x=1' }, /must name a repository path/],
    ['fetchInterval under 30s', { url: URL, fetchInterval: '10s' }, /fetchInterval must be at least 30s/],
    [
      'unknown lfs.prefetch',
      { url: URL, lfs: { prefetch: 'Tip' } },
      /must be equal to one of the allowed values/,
    ],
    ['fetchInterval over a day', { url: URL, fetchInterval: '25h' }, /fetchInterval must be at most 24h/],
    ['fetchInterval not a duration', { url: URL, fetchInterval: '5 minutes' }, /must match pattern/],
    [
      'snapshot interval under 5m',
      { url: URL, snapshot: { interval: '4m59s' } },
      /snapshot.interval must be at least 5m/,
    ],
    ['retain below 2', { url: URL, snapshot: { retain: 1 } }, /snapshot.retain must be at least 2/],
    [
      'warmup timeout under 30s',
      { url: URL, warmup: { timeout: '29s' } },
      /warmup.timeout must be at least 30s/,
    ],
    [
      'unknown onTimeout',
      { url: URL, warmup: { onTimeout: 'Maybe' } },
      /must be equal to one of the allowed values/,
    ],
    ['unknown access', { url: URL, access: 'Everyone' }, /must be equal to one of the allowed values/],
    ['cache not a label value', { url: URL, cache: 'a b' }, /must match pattern/],
    [
      'a Secret ref without name',
      { url: URL, credentialsSecretRef: {} },
      /must have required property 'name'/,
    ],
    [
      'a credentials Secret name that is no Secret name',
      { url: URL, credentialsSecretRef: { name: 'My_Secret' } },
      /credentialsSecretRef.name must name a Secret in this namespace/,
    ],
    [
      'a webhook Secret ref without name',
      { url: URL, webhookSecretRef: {} },
      /must have required property 'name'/,
    ],
    [
      'a webhook Secret name that is no Secret name',
      { url: URL, webhookSecretRef: { name: 'hooks/github' } },
      /webhookSecretRef.name must name a Secret in this namespace/,
    ],
  ];
  for (const [name, spec, message] of rejected) {
    test(`rejects ${name}`, () => {
      const { errors } = admit(spec);
      assert.ok(
        errors.some((e) => message.test(e)),
        `errors: ${JSON.stringify(errors)}`,
      );
    });
  }

  test('url and cache are immutable, other fields may change', () => {
    const old = { url: URL };
    assert.match(admit({ url: 'https://github.com/org/other.git' }, old).errors.join(), /url is immutable/);
    assert.match(admit({ url: URL, cache: 'other' }, old).errors.join(), /cache is immutable/);
    assert.deepEqual(admit({ url: URL, fetchInterval: '10m', snapshot: { retain: 5 } }, old).errors, []);
  });
});
