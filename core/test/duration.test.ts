import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { isCelError, run } from '@bufbuild/cel';
import fc from 'fast-check';
import { parse } from 'yaml';
import { DURATION_PATTERN, parseDuration } from '../duration.ts';
import { isContractError } from '../errors.ts';

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

interface Node {
  pattern?: string;
  properties?: Record<string, Node>;
  items?: Node;
  'x-kubernetes-validations'?: { rule: string }[];
}

function* nodes(node: Node, path = ''): Generator<[string, Node]> {
  yield [path, node];
  for (const [name, child] of Object.entries(node.properties ?? {})) yield* nodes(child, `${path}.${name}`);
  if (node.items) yield* nodes(node.items, `${path}[]`);
}

function accepts(text: string): boolean {
  try {
    parseDuration(text, 'd');
    return true;
  } catch (err) {
    assert.ok(isContractError(err, 'BAD_DURATION'), String(err));
    return false;
  }
}

/** Strings near the grammar: digits, dots, unit letters and a few strangers, in any order. */
const nearDuration = fc.oneof(
  fc.string({ unit: fc.constantFrom(...'0159.mshdun -+'.split('')), maxLength: 12 }),
  fc
    .array(
      fc.tuple(
        fc.stringMatching(/^[0-9]{1,3}(\.[0-9]{0,2})?$/),
        fc.constantFrom('ms', 's', 'm', 'h', 'd', 'us', ''),
      ),
      {
        minLength: 1,
        maxLength: 4,
      },
    )
    .map((parts) => parts.map(([n, u]) => n + u).join('')),
);

describe('the one duration grammar', () => {
  test('reads Go-style durations in ms, s, m and h', () => {
    assert.equal(parseDuration('90s', 'd'), 90_000);
    assert.equal(parseDuration('1h5m', 'd'), 3_900_000);
    assert.equal(parseDuration('250ms', 'd'), 250);
    assert.equal(parseDuration('1.5h', 'd'), 5_400_000);
    assert.equal(parseDuration('1m30s', 'd'), 90_000);
  });

  test('refuses bare numbers, other units and anything around the parts, naming the field', () => {
    for (const text of ['30', '1d', '5x', 'm5', '', ' 5m', '5m ', '-1s', '1.s', '.5s', '5 m', '1us']) {
      assert.throws(
        () => parseDuration(text, 'spec.fetchInterval'),
        (err) => isContractError(err, 'BAD_DURATION') && err.message.startsWith('spec.fetchInterval: '),
        JSON.stringify(text),
      );
    }
  });

  test('the pattern and the parser accept exactly the same strings (property)', () => {
    const pattern = new RegExp(DURATION_PATTERN);
    fc.assert(
      fc.property(nearDuration, (text) => {
        assert.equal(accepts(text), pattern.test(text), JSON.stringify(text));
      }),
      { numRuns: 5000 },
    );
  });

  test("CEL's duration(), which the CRD's bounds use, reads every string the pattern accepts", () => {
    const pattern = new RegExp(DURATION_PATTERN);
    // CEL durations end where Go's do, at ~292 years of nanoseconds; the CRD's bounds are far below.
    const inRange = (text: string) => pattern.test(text) && parseDuration(text, 'd') < 9e12;
    fc.assert(
      fc.property(nearDuration.filter(inRange), (text) => {
        const result = run('duration(self) >= duration("0s")', { self: text });
        assert.ok(!isCelError(result), `${text}: ${isCelError(result) ? result.message : ''}`);
        assert.equal(result, true);
      }),
      { numRuns: 500 },
    );
  });

  test('every duration field of the CRD and its chart copy has exactly this pattern', () => {
    for (const path of ['crds/gitmirror.yaml', 'charts/gitmirror/crds/gitmirror.yaml']) {
      const schema = parse(read(path)).spec.versions[0].schema.openAPIV3Schema as Node;
      const durations = [...nodes(schema)].filter(([, n]) =>
        n['x-kubernetes-validations']?.some((v) => v.rule.includes('duration(self)')),
      );
      assert.deepEqual(
        durations.map(([p]) => p),
        ['.spec.fetchInterval', '.spec.snapshot.interval', '.spec.warmup.timeout'],
      );
      for (const [field, node] of durations) assert.equal(node.pattern, DURATION_PATTERN, `${path} ${field}`);
    }
  });

  test("every duration in the chart's values schema has exactly this pattern", () => {
    const schema = JSON.parse(read('charts/gitmirror/values.schema.json')) as Node;
    const durations = [...nodes(schema)].filter(([, n]) => /[(|]s\|m\|h\)/.test(n.pattern ?? ''));
    assert.ok(durations.length >= 3, 'the operator timings at least');
    for (const [field, node] of durations) assert.equal(node.pattern, DURATION_PATTERN, field);
  });
});
