import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { generationArgs, packKey, parsePackObjectsArgs } from '../../src/pack-cache/pack-request.ts';

const CLONE = [
  'pack-objects',
  '--revs',
  '--thin',
  '--stdout',
  '--progress',
  '--delta-base-offset',
  '--include-tag',
];
const stdin = Buffer.from('1111111111111111111111111111111111111111\n--not\n\n');

function parsed(argv: string[], input: Buffer = stdin) {
  const request = parsePackObjectsArgs(argv, input);
  assert.ok(!('unsupported' in request), JSON.stringify(request));
  return request;
}

describe('pack-objects requests from upload-pack', () => {
  it('takes what upload-pack passes for a clone, a shallow fetch and a partial clone', () => {
    const clone = parsed(CLONE);
    assert.deepEqual(clone.globals, []);
    assert.equal(clone.progress, true);
    assert.deepEqual(clone.flags, ['--revs', '--thin', '--stdout', '--delta-base-offset', '--include-tag']);
    const shallow = parsed(['--shallow-file', '', ...CLONE, '--shallow']);
    assert.deepEqual(shallow.globals, ['--shallow-file', '']);
    assert.ok(shallow.flags.includes('--shallow'));
    const partial = parsed([...CLONE, '--filter=blob:none']);
    assert.ok(partial.flags.includes('--filter=blob:none'));
  });

  it('runs the generation with progress and the same arguments otherwise', () => {
    const quiet = parsed(['--shallow-file', '', 'pack-objects', '--revs', '--stdout', '--filter=tree:0']);
    assert.deepEqual(generationArgs(quiet), [
      '--shallow-file',
      '',
      'pack-objects',
      '--revs',
      '--stdout',
      '--filter=tree:0',
      '--progress',
    ]);
  });

  it('leaves anything it does not know to pack-objects run the usual way', () => {
    for (const argv of [
      ['pack-objects', '--revs', '--stdout', '--uri-protocol=https'],
      ['pack-objects', '--revs'],
      ['pack-objects', '--stdout'],
      ['repack', '-a'],
      ['--git-dir=/elsewhere', 'pack-objects', '--revs', '--stdout'],
      ['pack-objects', '--revs', '--stdout', 'base-name'],
      ['pack-objects', '--revs', '--stdout', '--filter=blob:none extra'],
    ]) {
      assert.ok('unsupported' in parsePackObjectsArgs(argv, stdin), argv.join(' '));
    }
  });
});

describe('pack cache keys', () => {
  const key = (
    over: { gitVersion?: string; repoId?: string; argv?: string[]; input?: Buffer<ArrayBufferLike> } = {},
  ) =>
    packKey({
      gitVersion: over.gitVersion ?? 'git version 2.39.5',
      repoId: over.repoId ?? 'github.com/org/repo',
      request: parsed(over.argv ?? CLONE, over.input ?? stdin),
    });

  it('is the same for the same request, whether or not the client wants progress', () => {
    assert.equal(key(), key());
    assert.equal(key(), key({ argv: CLONE.filter((a) => a !== '--progress') }));
  });

  it('differs with anything that changes the pack: stdin, flags, repository, git version', () => {
    const base = key();
    const others = [
      key({ input: Buffer.from('2222222222222222222222222222222222222222\n--not\n\n') }),
      key({ input: Buffer.concat([stdin, Buffer.from('x')]) }),
      key({ argv: [...CLONE, '--filter=blob:none'] }),
      key({ argv: ['--shallow-file', '', ...CLONE, '--shallow'] }),
      key({ argv: CLONE.filter((a) => a !== '--thin') }),
      key({ repoId: 'github.com/org/other' }),
      key({ gitVersion: 'git version 2.50.0' }),
    ];
    assert.equal(new Set([base, ...others]).size, others.length + 1);
  });

  it('cannot be forged by moving bytes between fields', () => {
    assert.notEqual(key({ repoId: 'a/b', gitVersion: 'v1' }), key({ repoId: 'b', gitVersion: 'v1a/' }));
  });
});
