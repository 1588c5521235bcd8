/**
 * Property-based fuzzing of snapshot extraction, through the entry point a restore uses
 * (`extractArchive`: a zstd stream plus the manifest's size and sha256) and, for some cases,
 * through `downloadAndExtract` and the mirror warm-up (`restoreOrClone`) that installs a
 * restore by rename. The attacker controls the store, so the manifest always matches the
 * hostile archive unless the case is about a lying manifest.
 *
 * Inputs:
 * - hostile tars written byte by byte (`support/raw-tar.ts`): traversal paths in every
 *   encoding (`..`, absolute, backslashes, `.` and empty segments, percent and Unicode
 *   look-alikes, NUL and control characters, over-long names and segments), carried in the
 *   name field, the ustar prefix, a PAX `path` or a GNU `L` header; links (in the header, a
 *   PAX `linkpath` or a GNU `K` header) followed by a write through them; devices, FIFOs,
 *   unknown types; duplicates and file/directory clashes; size fields in octal, base-256,
 *   negative or garbage; PAX headers that lie about size and type; bad checksums,
 *   truncation, trailing garbage; mixed with valid entries;
 * - mutations of the real archive of a git mirror: bit flips, header fields rewritten (with
 *   and without a fixed checksum), truncation, spliced blocks, duplicated and inserted
 *   entries, recompressed;
 * - corruption of the zstd stream itself;
 * - manifests that lie about a valid archive's size or sha256.
 *
 * Properties of every run: it settles within a time limit; a failure is a GitMirrorError
 * with an expected code and a message; nothing outside the target directory is created,
 * changed or deleted (a sentinel tree around the target, with a symlink out of it, is
 * compared by type, mode, inode, link count, size, mtime, ctime and content); the target
 * holds only regular files and directories, without setuid/setgid/sticky bits and without
 * bytes of any file outside. `extractArchive` leaves a failed target for its caller to
 * remove (its contract); `downloadAndExtract` must leave its temp parent empty, and a ready
 * mirror that a failed `restoreOrClone` would have replaced must be untouched.
 *
 * Run counts are small so that `npm test` stays fast: each extraction starts a worker
 * thread (about 0.2 s). For a longer run, multiply every property's runs, and fix the seed
 * to reproduce one:
 *
 *   GITMIRROR_FUZZ_RUNS=10 node --test sidecar/test/archive/extract-fuzz.test.ts
 *   GITMIRROR_FUZZ_SEED=1234 GITMIRROR_FUZZ_RUNS=10 node --test sidecar/test/archive/extract-fuzz.test.ts
 *
 * GITMIRROR_FUZZ_STATS=1 also prints how often each outcome (accepted, or which error) came up.
 * A failure prints fast-check's seed and counterexample path; replay it with
 * `GITMIRROR_FUZZ_SEED=<seed> GITMIRROR_FUZZ_PATH=<path> node --test --test-name-pattern='<test name>' <this file>`.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import {
  cp,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { compress, decompress } from 'zstd-napi';
import { silentLogger } from '../../../core/log.ts';
import { parseRepoId } from '../../../core/repo-id.ts';
import { headCommit, makeMirror } from '../../../testing/git-repos.ts';
import { createArchiveStream } from '../../src/archive/archive-create.ts';
import { type ExtractResult, extractArchive } from '../../src/archive/archive-extract.ts';
import { classifyEntry, safeSegments } from '../../src/archive/tar-entry-policy.ts';
import { type ErrorCode, GitMirrorError, isGitMirrorError } from '../../src/errors/gitmirror-error.ts';
import { ProcessGitRunner } from '../../src/git/git-runner.ts';
import { SidecarMetrics } from '../../src/metrics/sidecar-metrics.ts';
import { DataLayout } from '../../src/mirrors/data-layout.ts';
import { Mirror } from '../../src/mirrors/mirror.ts';
import { restoreOrClone } from '../../src/mirrors/mirror-warmup.ts';
import { archiveKey, manifestKey } from '../../src/snapshot/layout.ts';
import { SNAPSHOT_FORMAT_V1, type SnapshotManifest } from '../../src/snapshot/manifest.ts';
import { downloadAndExtract } from '../../src/snapshot/restore-download.ts';
import { StoreSnapshotService } from '../../src/snapshot/snapshot-service-impl.ts';
import { FileSnapshotStore } from '../../src/store/fs-store.ts';
import {
  BLOCK,
  base256,
  END_OF_ARCHIVE,
  entry,
  type FieldName,
  type FieldValue,
  fixChecksum,
  gnuLong,
  type HeaderFields,
  header,
  headerOffsets,
  pad,
  paxHeader,
  setField,
} from './support/raw-tar.ts';

// ---------------------------------------------------------------------------------------------
// Run configuration

const scale = Number(process.env.GITMIRROR_FUZZ_RUNS ?? '1');
const seed = process.env.GITMIRROR_FUZZ_SEED ? Number(process.env.GITMIRROR_FUZZ_SEED) : undefined;
const replayPath = process.env.GITMIRROR_FUZZ_PATH || undefined;
/** One extraction that has not settled after this long counts as a hang (machines are shared). */
const SETTLE_MS = 20_000;

/** With GITMIRROR_FUZZ_STATS=1, how often each outcome happened is printed at the end. */
const outcomes = new Map<string, number>();
function record(property: string, settled: Settled<unknown>): void {
  const what = settled.ok
    ? 'accepted'
    : isGitMirrorError(settled.error)
      ? `${settled.error.code} ${settled.error.message.replace(/"(?:[^"\\]|\\.)*"|'[^']*'|\b[0-9a-f]{64}\b|\d+/g, '_').slice(0, 90)}`
      : String(settled.error).slice(0, 90);
  const key = `${property}: ${what}`;
  outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
}

function runs(numRuns: number): { numRuns: number; seed?: number; path?: string } {
  const factor = Number.isFinite(scale) && scale > 0 ? scale : 1;
  return { numRuns: Math.max(1, Math.round(numRuns * factor)), seed, path: replayPath };
}

// ---------------------------------------------------------------------------------------------
// The sandbox: everything an extraction could reach lives under `root`, and the targets are
// three levels below it, so up to three `..` land on something these tests watch.
//
//   root/link-target/secret            the target of the symlink below
//   root/l1/sentinel/{secret,sub/deep}
//   root/l1/work/{sibling-file, sibling-dir/inner, link-out -> ../../link-target}
//   root/l1/work/target-N/              one per run, removed after the run
//   root/data/{mirrors/github.com/org/repo.git, tmp/, spool/}   a data dir with a ready mirror
//   root/store/                         the snapshot store (changes as cases are planted)

const MARKER = `SENTINEL-${randomBytes(12).toString('hex')}`;
let root: string;
let fixtureDir: string;
let work: string;
let storeDir: string;
let baseline: Map<string, string>;
let mirrorArchive: Buffer;
let mirrorTar: Buffer;
let mirrorCommit: string;
let layout: DataLayout;
let store: FileSnapshotStore;
const repo = parseRepoId('github.com/org/repo');
let mirrorDir: string;
let volatileDirs: Set<string>;
let counter = 0;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'gm-extract-fuzz-'));
  work = join(root, 'l1', 'work');
  await mkdir(join(work, 'sibling-dir'), { recursive: true });
  await writeFile(join(work, 'sibling-file'), `${MARKER} sibling\n`);
  await writeFile(join(work, 'sibling-dir', 'inner'), `${MARKER} inner\n`, { mode: 0o640 });
  await mkdir(join(root, 'l1', 'sentinel', 'sub'), { recursive: true });
  await writeFile(join(root, 'l1', 'sentinel', 'secret'), `${MARKER} secret\n`);
  await writeFile(join(root, 'l1', 'sentinel', 'sub', 'deep'), `${MARKER} deep\n`, { mode: 0o600 });
  await mkdir(join(root, 'link-target'));
  await writeFile(join(root, 'link-target', 'secret'), `${MARKER} behind a symlink\n`);
  await symlink('../../link-target', join(work, 'link-out'));

  // The mirror's source lives outside the sandbox, which stays small enough to compare often.
  fixtureDir = await mkdtemp(join(tmpdir(), 'gm-extract-fuzz-fixture-'));
  const source = await makeMirror(fixtureDir, 3);
  mirrorCommit = await headCommit(source);
  mirrorArchive = Buffer.concat(await createArchiveStream(source).toArray());
  mirrorTar = decompress(mirrorArchive);

  layout = new DataLayout(join(root, 'data'));
  await layout.prepare();
  mirrorDir = layout.mirrorDir(repo);
  await mkdir(dirname(mirrorDir), { recursive: true });
  await cp(source, mirrorDir, { recursive: true });
  storeDir = join(root, 'store');
  await mkdir(storeDir);
  store = new FileSnapshotStore(storeDir);
  // Their own times and link counts change as targets and temp dirs come and go.
  volatileDirs = new Set([work, layout.tmpDir]);
  baseline = await stateOf();
});
after(async () => {
  if (process.env.GITMIRROR_FUZZ_STATS)
    for (const [what, n] of [...outcomes].sort()) process.stderr.write(`${String(n).padStart(6)}  ${what}\n`);
  await rm(root, { recursive: true, force: true });
  await rm(fixtureDir, { recursive: true, force: true });
});

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Type, mode, inode, link count, size, times and content of everything under root. */
async function stateOf(): Promise<Map<string, string>> {
  const state = new Map<string, string>();
  const walk = async (path: string): Promise<void> => {
    const st = await lstat(path);
    const kind = st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
    const parts: Array<string | number> = [kind, (st.mode & 0o7777).toString(8), st.ino, st.uid];
    if (!volatileDirs.has(path)) parts.push(st.nlink, st.size, st.mtimeMs, st.ctimeMs);
    if (kind === 'file') parts.push(sha256(await readFile(path)));
    if (kind === 'link') parts.push(await readlink(path));
    state.set(relative(root, path) || '.', parts.join(' '));
    if (kind !== 'dir') return;
    const children = (await readdir(path)).filter((name) => !(path === work && name.startsWith('target-')));
    await Promise.all(
      children
        .map((name) => join(path, name))
        .filter((child) => child !== storeDir)
        .map(walk),
    );
  };
  await walk(root);
  return new Map([...state].sort(([a], [b]) => (a < b ? -1 : 1)));
}

async function assertOutsideUntouched(): Promise<void> {
  const now = await stateOf();
  const changes: string[] = [];
  for (const [path, was] of baseline) {
    const is = now.get(path);
    if (is === undefined) changes.push(`deleted ${path}`);
    else if (is !== was) changes.push(`changed ${path}: ${was} -> ${is}`);
  }
  for (const path of now.keys()) if (!baseline.has(path)) changes.push(`created ${path}`);
  assert.deepEqual(changes, [], 'nothing outside the target may be created, changed or deleted');
}

/**
 * Checks that the target holds only plain files and directories, without special mode bits
 * or bytes from outside; returns its files (relative path → content).
 */
async function plainTree(target: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const name of await readdir(target, { recursive: true })) {
    const path = join(target, name);
    const st = await lstat(path);
    assert.ok(st.isFile() || st.isDirectory(), `${name} in the target is neither a file nor a directory`);
    assert.equal(st.mode & 0o7000, 0, `${name} has setuid, setgid or sticky bits`);
    if (st.isFile()) {
      const content = await readFile(path);
      assert.ok(!content.includes(MARKER), `${name} holds bytes of a file outside the target`);
      files.set(name, content);
    }
  }
  return files;
}

/** Splits `data` at the given points (modulo its length): how it arrives over the network. */
function chunked(data: Buffer, cuts: number[]): Readable {
  const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let start = 0;
  for (const point of [...points, data.length]) {
    if (point > start) chunks.push(data.subarray(start, point));
    start = Math.max(start, point);
  }
  return Readable.from(chunks);
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** Runs `run` with a deadline: a hang fails the property (after cancelling the run). */
async function settle<T>(what: string, run: (signal: AbortSignal) => Promise<T>): Promise<Settled<T>> {
  const controller = new AbortController();
  const outcome = run(controller.signal).then(
    (value): Settled<T> => ({ ok: true, value }),
    (error: unknown): Settled<T> => ({ ok: false, error }),
  );
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'hung'>((resolve) => {
    timer = setTimeout(() => resolve('hung'), SETTLE_MS);
  });
  const first = await Promise.race([outcome, deadline]);
  clearTimeout(timer);
  if (first !== 'hung') return first;
  controller.abort();
  await Promise.race([outcome, new Promise((resolve) => setTimeout(resolve, 15_000))]);
  throw new Error(`${what} did not settle within ${SETTLE_MS / 1000} s`);
}

function assertTypedFailure(error: unknown, allowed: readonly ErrorCode[]): void {
  assert.ok(isGitMirrorError(error), `not a GitMirrorError: ${(error as Error)?.stack ?? String(error)}`);
  assert.ok(allowed.includes(error.code), `unexpected ${error.code}: ${error.message}`);
  assert.ok(error.message.length > 10 && error.message.length < 2000, `unclear message: ${error.message}`);
}

interface Manifested {
  archive: Buffer;
  /** What the manifest claims; the archive's own size and sha256 when omitted. */
  sizeBytes?: number;
  sha256?: string;
}

/** `extractArchive` into a fresh target next to the sentinels; checks both afterwards. */
async function extractCase(property: string, input: Manifested, cuts: number[] = []) {
  const target = join(work, `target-${counter++}`);
  await mkdir(target);
  try {
    const settled = await settle('extraction', (signal) =>
      extractArchive(chunked(input.archive, cuts), target, {
        expectedSize: input.sizeBytes ?? input.archive.length,
        expectedSha256: input.sha256 ?? sha256(input.archive),
        signal,
        label: 'fuzzed archive',
      }),
    );
    record(property, settled);
    const files = await plainTree(target);
    await assertOutsideUntouched();
    return { settled, files };
  } finally {
    await rm(target, { recursive: true, force: true });
  }
}

const UNSAFE: ErrorCode[] = ['SNAPSHOT_UNSAFE_ENTRY'];
const CORRUPT: ErrorCode[] = ['SNAPSHOT_CORRUPT'];
const HOSTILE: ErrorCode[] = ['SNAPSHOT_CORRUPT', 'SNAPSHOT_UNSAFE_ENTRY'];

// ---------------------------------------------------------------------------------------------
// Generators

/** Segments a real mirror could have, and some that only look like traversal. */
const PLAIN_SEGMENTS = [
  'objects',
  'pack',
  'refs',
  'heads',
  'HEAD',
  'a',
  'evil',
  'pwned',
  'sibling-file',
  'sibling-dir',
  'link-out',
  'sentinel',
  'secret',
  '...',
  '..a',
  'a..',
  ' ..',
  '.. ',
  '%2e%2e',
  '%252e%252e',
  '..%2f..',
  '%2f',
  '%00',
  '\u2215', // division slash
  '..\u2215..',
  '\uff0e\uff0e', // fullwidth full stops
  '\uff0e',
  '\u2024\u2024', // one dot leaders
  '\u2025', // two dot leader
  '\uff0f', // fullwidth solidus
  '\u200b..', // zero width space
  '..\u200b',
  '\u202e..', // right-to-left override
  'e\u0301', // combining accent
  '\u00a0',
  '\u{1f600}',
  '-rf',
];
const plainSegment = fc.constantFrom(...PLAIN_SEGMENTS);

/** Relative and absolute paths at the sentinels. */
function escapes(): string[] {
  return [
    '../sibling-file',
    '../sibling-dir/pwned',
    '../sibling-dir/inner',
    '../link-out/pwned',
    '../link-out/secret',
    '../../sentinel/secret',
    '../../sentinel/pwned',
    '../../../link-target/secret',
    'a/../../sibling-file',
    './../sibling-dir/pwned',
    `${work}/sibling-file`,
    `${work}/pwned-abs`,
    `${root}/l1/sentinel/pwned`,
    `${root}/link-target/secret`,
  ];
}

type Poison = 'dotdot' | 'dot' | 'empty' | 'absolute' | 'backslash' | 'control' | 'escape';

/**
 * Paths the policy must refuse whatever carries them: one poison injected into plain
 * segments. (NUL is not among them: every tar reader cuts a name at NUL.)
 */
const unsafePath = fc
  .record({
    segments: fc.array(plainSegment, { minLength: 1, maxLength: 4 }),
    poison: fc.constantFrom<Poison>('dotdot', 'dot', 'empty', 'absolute', 'backslash', 'control', 'escape'),
    at: fc.nat(),
    leadingDot: fc.boolean(),
    control: fc
      .integer({ min: 1, max: 0x1f })
      .filter((c) => c !== 0x0a)
      .map((c) => String.fromCharCode(c)),
    absolute: fc.constantFrom('', 'work', 'sentinel'),
    escapeAt: fc.nat(),
  })
  .map(({ segments, poison, at, leadingDot, control, absolute, escapeAt }) => {
    const s = [...segments];
    const i = at % s.length;
    switch (poison) {
      case 'dotdot':
        s.splice(at % (s.length + 1), 0, '..');
        break;
      case 'dot': // after the first segment: a leading `./` is allowed
        s.splice(1 + i, 0, '.');
        break;
      case 'empty': // never last: one trailing slash is how tar marks directories
        s.splice(i, 0, '');
        break;
      case 'absolute': {
        const base = { '': '', work, sentinel: join(root, 'l1', 'sentinel') }[absolute];
        return `${base}/${s.join('/')}`;
      }
      case 'backslash':
        s[i] = [`..\\..`, `${s[i]}\\..`, `\\${s[i]}`][at % 3]!;
        break;
      case 'control':
        s[i] = `${s[i]}${control}`;
        break;
      case 'escape': {
        const all = escapes();
        return all[escapeAt % all.length]!;
      }
    }
    return `${leadingDot ? './' : ''}${s.join('/')}`;
  });

const segmentsOf = (path: string) => path.split('/');
/** At most three `..`: the sandbox watches three levels up from the target. */
const withinSandbox = (path: string) =>
  segmentsOf(path).filter((s) => s === '..').length <= 3 &&
  (!path.startsWith('/') || path.startsWith(`${root}/`));

/** 201 bytes: 21 of them make a path past PATH_MAX. */
const LONG_DIR = `${'d'.repeat(200)}/`;

/** Anything at all as a path, kept inside the sandbox should the extractor follow it. */
const chaosPath = fc
  .oneof(
    unsafePath,
    fc.array(plainSegment, { minLength: 1, maxLength: 4 }).map((s) => s.join('/')),
    fc.string({
      unit: fc.constantFrom('.', '/', '\\', 'a', '\0', '%', '\u2215', '\uff0e', '\n'),
      maxLength: 12,
    }),
    fc.string({ unit: 'binary', maxLength: 24 }),
    fc.constantFrom('', '.', './', '/', '//', '..', '../', './..', '.../', 'a/\0/../../x', '\0../x'),
    // over-long: a segment past NAME_MAX, a path past PATH_MAX, deeper than 64 levels
    fc.integer({ min: 240, max: 300 }).map((n) => `objects/${'n'.repeat(n)}`),
    fc.integer({ min: 100, max: 140 }).map((n) => `${'\u00e9'.repeat(n)}/x`),
    fc.integer({ min: 4090, max: 4200 }).map((n) => `${'p/'.repeat(n >> 1)}f`),
    fc.integer({ min: 21, max: 25 }).map((n) => `${LONG_DIR.repeat(n)}f`),
    fc.integer({ min: 60, max: 70 }).map((n) => `${'d/'.repeat(n)}f`),
  )
  .map((path) => (path.startsWith('/') && !path.startsWith(`${root}/`) ? `${root}${path}` : path))
  .filter(withinSandbox);

/** How a path reaches the reader. */
type PathEncoding = 'name' | 'prefix' | 'pax' | 'gnu' | 'gnu-then-pax' | 'pax-then-gnu';
const pathEncoding = fc.constantFrom<PathEncoding>(
  'name',
  'prefix',
  'pax',
  'gnu',
  'gnu-then-pax',
  'pax-then-gnu',
);

const bytes = (s: string) => Buffer.byteLength(s);

/**
 * The blocks that carry `path` to the next header, and that header's own name and prefix.
 * `name` and `prefix` fall back to PAX when the path does not fit (they would cut it).
 */
function carry(path: string, how: PathEncoding): { before: Buffer[]; name: string; prefix?: string } {
  if (how === 'name' && bytes(path) <= 100) return { before: [], name: path };
  const slash = path.lastIndexOf('/', path.length - 2);
  if (
    how === 'prefix' &&
    slash > 0 &&
    bytes(path.slice(slash + 1)) <= 100 &&
    bytes(path.slice(0, slash)) <= 155
  )
    return { before: [], name: path.slice(slash + 1), prefix: path.slice(0, slash) };
  // The last of several extended headers wins; the header's own name is a harmless decoy.
  if (how === 'gnu') return { before: [gnuLong('L', path)], name: 'decoy' };
  if (how === 'gnu-then-pax')
    return { before: [gnuLong('L', 'decoy-gnu'), paxHeader([['path', path]])], name: 'decoy' };
  if (how === 'pax-then-gnu')
    return { before: [paxHeader([['path', 'decoy-pax']]), gnuLong('L', path)], name: 'decoy' };
  return { before: [paxHeader([['path', path]])], name: 'decoy' };
}

/** How a link target reaches the reader. */
type LinkEncoding = 'linkname' | 'pax' | 'gnu';
function carryLink(target: string, how: LinkEncoding): { before: Buffer[]; linkname?: string } {
  if (how === 'linkname' && bytes(target) <= 100) return { before: [], linkname: target };
  // As with names, the header keeps a (harmless) link target of its own: node-tar checks
  // that one, and refuses a link with an empty one before the policy sees it.
  if (how === 'gnu') return { before: [gnuLong('K', target)], linkname: 'decoy' };
  return { before: [paxHeader([['linkpath', target]])], linkname: 'decoy' };
}

function fileEntry(
  path: string,
  how: PathEncoding,
  body: Uint8Array,
  typeflag = '0',
  extra: Partial<HeaderFields> = {},
) {
  const { before, name, prefix } = carry(path, how);
  return [...before, entry({ name, prefix, typeflag, ...extra }, body)];
}

const body = fc.uint8Array({ maxLength: 1500 });

/** Valid files and directories, under their own names so that they never clash. */
const validEntries = fc
  .array(fc.record({ dir: fc.boolean(), body, how: pathEncoding }), { maxLength: 3 })
  .map((list) =>
    list.flatMap(({ dir, body, how }, i) =>
      dir
        ? fileEntry(`valid${i}/`, how, new Uint8Array(0), '5', { mode: 0o755 })
        : fileEntry(`valid${i}`, how, body),
    ),
  );

const linkTarget = fc.oneof(
  fc.constantFrom(...['/etc/passwd', '/', '.', '..', 'HEAD', 'valid0', '../sibling-dir']),
  fc.constant(0).map(() => escapes()[0]!),
  fc.nat().map((i) => escapes()[i % escapes().length]!),
);

/** One clean attack: every reader sees exactly this, and the policy must refuse it. */
const attack = fc.oneof(
  // traversal, in every encoding and as file or directory
  {
    weight: 3,
    arbitrary: fc
      .record({ path: unsafePath, how: pathEncoding, type: fc.constantFrom('0', '7', '\0', '5'), body })
      .map(({ path, how, type, body }) => ({
        what: `traversal ${JSON.stringify(path)} via ${how}`,
        blocks: fileEntry(path, how, type === '5' ? new Uint8Array(0) : body, type),
      })),
  },
  // a link, then a write through it or over it
  fc
    .record({
      type: fc.constantFrom('1', '2'),
      target: linkTarget,
      linkHow: fc.constantFrom<LinkEncoding>('linkname', 'pax', 'gnu'),
      name: fc.constantFrom('evil', 'objects', 'valid0'),
      next: fc.constantFrom('nothing', 'write-through', 'write-over'),
      body,
    })
    .map(({ type, target, linkHow, name, next, body }) => {
      const link = carryLink(target, linkHow);
      const blocks = [...link.before, entry({ name, typeflag: type, linkname: link.linkname })];
      if (next === 'write-through') blocks.push(entry({ name: `${name}/pwned`, typeflag: '0' }, body));
      if (next === 'write-over') blocks.push(entry({ name, typeflag: '0' }, body));
      return {
        what: `${type === '1' ? 'hard' : 'sym'}link ${name} -> ${target} via ${linkHow}, ${next}`,
        blocks,
      };
    }),
  // devices, FIFOs and types nobody should archive
  fc
    .record({
      type: fc.constantFrom('3', '4', '6', 'D', 'S', 'V', 'A', 'I', 'M', '9', 'Z'),
      how: pathEncoding,
    })
    .map(({ type, how }) => ({
      what: `entry of type ${type} via ${how}`,
      blocks: fileEntry('special', how, new Uint8Array(0), type, { devmajor: 1, devminor: 3 }),
    })),
  // two entries at one path
  fc
    .record({
      clash: fc.constantFrom('file-file', 'dir-file', 'file-dir', 'file-child', 'dir-contiguous'),
      how: pathEncoding,
      dotted: fc.boolean(),
      body,
    })
    .map(({ clash, how, dotted, body }) => {
      const again = dotted ? './x' : 'x';
      const first = clash.startsWith('dir')
        ? fileEntry('x/', how, new Uint8Array(0), '5')
        : fileEntry('x', how, body);
      const second = {
        'file-file': () => fileEntry(again, how, body),
        'dir-file': () => fileEntry(again, how, body),
        'file-dir': () => fileEntry(`${again}/`, how, new Uint8Array(0), '5'),
        'file-child': () => fileEntry(`${again}/y`, how, body),
        'dir-contiguous': () => fileEntry(again, how, body, '7'),
      }[clash]();
      return { what: `${clash} at ${again} via ${how}`, blocks: [...first, ...second] };
    }),
  // sizes past the per-file bound, in base-256 or PAX
  fc
    .record({ size: fc.bigInt({ min: 2n ** 37n, max: 2n ** 52n }), pax: fc.boolean() })
    .map(({ size, pax }) => ({
      what: `declared size ${size} via ${pax ? 'PAX' : 'base-256'}`,
      blocks: pax
        ? [paxHeader([['size', String(size)]]), header({ name: 'huge', typeflag: '0', size: 0 })]
        : [header({ name: 'huge', typeflag: '0', size: base256(size, 12) })],
    })),
);

const attackBlocks = attack.map((a) => a.blocks);

type SizeLie =
  | 'honest'
  | 'bigger'
  | 'smaller'
  | 'max-octal'
  | 'base256'
  | 'base256-unsafe'
  | 'negative'
  | 'garbage'
  | 'blank';

/** One entry with every field up for grabs. */
const chaosEntry = fc
  .record({
    path: chaosPath,
    how: pathEncoding,
    typeflag: fc.oneof(
      {
        weight: 3,
        arbitrary: fc.constantFrom(
          '0',
          '\0',
          '7',
          '5',
          '1',
          '2',
          '3',
          '4',
          '6',
          'D',
          'S',
          'V',
          'K',
          'L',
          'x',
          'g',
          'N',
        ),
      },
      fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)),
    ),
    // Most fields are usually sane, so that runs get past the tar parser to the policy.
    link: fc.oneof(
      { weight: 3, arbitrary: fc.constant(undefined) },
      fc.record({
        target: fc.oneof(linkTarget, chaosPath),
        how: fc.constantFrom<LinkEncoding>('linkname', 'pax', 'gnu'),
      }),
    ),
    body,
    size: fc.oneof(
      { weight: 6, arbitrary: fc.constant<SizeLie>('honest') },
      fc.constantFrom<SizeLie>(
        'bigger',
        'smaller',
        'max-octal',
        'base256',
        'base256-unsafe',
        'negative',
        'garbage',
        'blank',
      ),
    ),
    delta: fc.integer({ min: 1, max: 5000 }),
    garbage: fc.uint8Array({ minLength: 12, maxLength: 12 }),
    mode: fc.oneof(
      { weight: 4, arbitrary: fc.constant(0o644) },
      { weight: 2, arbitrary: fc.integer({ min: 0, max: 0o7777 }) },
      { weight: 1, arbitrary: fc.uint8Array({ minLength: 8, maxLength: 8 }) },
    ),
    checksum: fc.oneof(
      { weight: 8, arbitrary: fc.constant<'valid'>('valid') },
      fc.constantFrom<'wrong' | 'blank'>('wrong', 'blank'),
    ),
    magic: fc.constantFrom<'ustar' | 'gnu' | 'none'>('ustar', 'ustar', 'gnu', 'none'),
    pax: fc.oneof(
      { weight: 2, arbitrary: fc.constant<Array<[string, string]>>([]) },
      fc.array(
        fc.tuple(
          fc.constantFrom<string>(
            'size',
            'type',
            'mode',
            'uid',
            'mtime',
            'linkpath',
            'path',
            'hdrcharset',
            'SCHILY.dev',
            'comment',
          ),
          fc.oneof(
            fc.constantFrom(
              '-1',
              '0',
              '1',
              '0.5',
              '1e12',
              'Infinity',
              'NaN',
              '99999999999999999999',
              '0',
              '2',
              '5',
              'File',
              'SymbolicLink',
              '../x',
              '',
            ),
            fc.string({ maxLength: 10 }),
          ),
        ),
        { minLength: 1, maxLength: 3 },
      ),
    ),
    globalPax: fc.boolean(),
  })
  .map((e): Buffer[] => {
    const blocks: Buffer[] = [];
    if (e.pax.length > 0) {
      // PAX values must not carry paths out of the sandbox either
      const records = e.pax.map(([k, v]): [string, string] => [
        k,
        (k === 'path' || k === 'linkpath') && !withinSandbox(v) ? 'x' : v,
      ]);
      blocks.push(paxHeader(records, e.globalPax));
    }
    const carried = carry(e.path, e.how);
    const link = e.link
      ? carryLink(withinSandbox(e.link.target) ? e.link.target : 'x', e.link.how)
      : { before: [] };
    const sizes: Record<SizeLie, FieldValue> = {
      honest: e.body.length,
      bigger: e.body.length + e.delta,
      smaller: Math.max(0, e.body.length - e.delta),
      'max-octal': 0o77777777777,
      base256: base256(BigInt(e.body.length), 12),
      'base256-unsafe': base256(2n ** 80n, 12),
      negative: base256(-BigInt(e.delta), 12),
      garbage: e.garbage,
      blank: '',
    };
    blocks.push(
      ...carried.before,
      ...link.before,
      header({
        name: carried.name,
        prefix: carried.prefix,
        typeflag: e.typeflag,
        size: sizes[e.size],
        mode: e.mode,
        linkname: 'linkname' in link ? link.linkname : undefined,
        magic: e.magic,
        checksum: e.checksum,
      }),
      pad(e.body),
    );
    return blocks;
  });

/** How the archive ends. */
const ending = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ kind: 'end' as const }) },
  fc.record({
    kind: fc.constantFrom(
      'none' as const,
      'one-block' as const,
      'garbage' as const,
      'truncate' as const,
      'end-garbage' as const,
    ),
    garbage: fc.uint8Array({ minLength: 1, maxLength: 2048 }),
    at: fc.nat(),
  }),
);

function finish(blocks: Buffer[], end: { kind: string; garbage?: Uint8Array; at?: number }): Buffer {
  const tar = Buffer.concat(blocks);
  switch (end.kind) {
    case 'none':
      return tar;
    case 'one-block':
      return Buffer.concat([tar, Buffer.alloc(BLOCK)]);
    case 'garbage':
      return Buffer.concat([tar, Buffer.from(end.garbage!)]);
    case 'end-garbage':
      return Buffer.concat([tar, END_OF_ARCHIVE, Buffer.from(end.garbage!)]);
    case 'truncate':
      return tar.subarray(0, end.at! % (tar.length + 1));
    default:
      return Buffer.concat([tar, END_OF_ARCHIVE]);
  }
}

const cuts = fc.array(fc.nat(), { maxLength: 4 });

/** A clean attack among valid entries, as an archive whose manifest vouches for it. */
const attackArchive = fc
  .record({ before: validEntries, attack, after: validEntries })
  .map(({ before, attack, after }) => ({
    what: attack.what,
    archive: compress(Buffer.concat([...before, ...attack.blocks, ...after, END_OF_ARCHIVE])),
  }));

/** Whatever the archive, vouched for by its manifest: it extracts, or fails as hostile. */
async function assertSurvives(
  property: string,
  archives: fc.Arbitrary<Buffer>,
  numRuns: number,
): Promise<void> {
  await fc.assert(
    fc.asyncProperty(archives, cuts, async (archive, cuts) => {
      const { settled } = await extractCase(property, { archive }, cuts);
      if (!settled.ok) assertTypedFailure(settled.error, HOSTILE);
    }),
    runs(numRuns),
  );
}

// ---------------------------------------------------------------------------------------------

describe('the entry policy on its own (pure, so many runs)', () => {
  it('maps every path it accepts strictly inside the target, and refuses the rest as unsafe', () => {
    const target = '/data/tmp/restore-x';
    const anyPath = fc.oneof(
      chaosPath,
      unsafePath,
      fc.string({
        unit: fc.constantFrom('.', '/', '\\', 'a', '\0', '\n', '%', '\u2215', '\uff0e'),
        maxLength: 16,
      }),
      fc.string({ unit: 'binary', maxLength: 40 }),
    );
    fc.assert(
      fc.property(anyPath, (path) => {
        let segments: string[];
        try {
          segments = safeSegments(path);
        } catch (err) {
          assert.ok(isGitMirrorError(err, 'SNAPSHOT_UNSAFE_ENTRY'), String(err));
          return;
        }
        assert.ok(segments.length <= 64);
        for (const segment of segments) {
          assert.ok(!['', '.', '..'].includes(segment), `segment ${JSON.stringify(segment)}`);
          // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is checked
          assert.doesNotMatch(segment, /[/\\\u0000-\u001f\u007f]/);
          assert.ok(Buffer.byteLength(segment) <= 255);
        }
        const resolved = resolve(target, ...segments);
        assert.ok(resolved === target ? segments.length === 0 : resolved.startsWith(`${target}/`), resolved);
      }),
      runs(20_000),
    );
  });

  it('lets only files and directories through', () => {
    const knownTypes = fc.constantFrom(
      'File',
      'OldFile',
      'ContiguousFile',
      'Directory',
      'Link',
      'SymbolicLink',
      'CharacterDevice',
      'BlockDevice',
      'FIFO',
      'GNUDumpDir',
      'SparseFile',
      'Unsupported',
      'ExtendedHeader',
    );
    fc.assert(
      fc.property(fc.oneof(knownTypes, fc.string({ maxLength: 12 })), (type) => {
        try {
          const kind = classifyEntry('x', type);
          assert.ok(
            kind === 'directory'
              ? type === 'Directory'
              : ['File', 'OldFile', 'ContiguousFile'].includes(type),
            `${type} passed as ${kind}`,
          );
        } catch (err) {
          assert.ok(isGitMirrorError(err, 'SNAPSHOT_UNSAFE_ENTRY'), String(err));
        }
      }),
      runs(2_000),
    );
  });
});

describe('extraction under property-based fuzzing', () => {
  it('refuses every clean attack with SNAPSHOT_UNSAFE_ENTRY, among valid entries and in any chunking', async () => {
    await fc.assert(
      fc.asyncProperty(attackArchive, cuts, async ({ what, archive }, cuts) => {
        const { settled } = await extractCase('attack', { archive }, cuts);
        assert.ok(!settled.ok, `accepted: ${what}`);
        assertTypedFailure(settled.error, UNSAFE);
      }),
      runs(30),
    );
  });

  it('survives arbitrary hostile entries: success or a typed error, nothing outside touched', () =>
    assertSurvives(
      'chaos',
      fc
        .tuple(
          fc.array(fc.oneof(chaosEntry, validEntries, attackBlocks), { minLength: 1, maxLength: 5 }),
          ending,
        )
        .map(([entries, end]) => compress(finish(entries.flat(), end))),
      35,
    ));

  it('creates names that only look like traversal literally, inside the target', async () => {
    const leaf = fc.tuple(plainSegment, fc.array(plainSegment, { maxLength: 2 }), pathEncoding, body);
    await fc.assert(
      fc.asyncProperty(fc.array(leaf, { minLength: 1, maxLength: 5 }), cuts, async (leaves, cuts) => {
        // `f<i>` keeps every file name distinct from every directory name
        const files = leaves.map(([name, dirs, how, content], i) => ({
          path: [...dirs, `f${i}${name}`].join('/'),
          how,
          content: Buffer.from(content),
        }));
        const archive = compress(
          Buffer.concat([...files.flatMap((f) => fileEntry(f.path, f.how, f.content)), END_OF_ARCHIVE]),
        );
        const { settled, files: extracted } = await extractCase('look-alike', { archive }, cuts);
        assert.ok(settled.ok, `refused: ${settled.ok ? '' : String(settled.error)}`);
        assert.deepEqual(settled.value, {
          entries: files.length,
          bytes: files.reduce((n, f) => n + f.content.length, 0),
        } satisfies ExtractResult);
        assert.deepEqual(
          new Map([...extracted].sort(([a], [b]) => (a < b ? -1 : 1))),
          new Map(files.map((f) => [f.path, f.content] as const).sort(([a], [b]) => (a < b ? -1 : 1))),
        );
      }),
      runs(8),
    );
  });

  it('survives mutations of a real mirror archive (recompressed): success or a typed error', () =>
    assertSurvives(
      'tar mutation',
      fc
        .array(tarMutation, { minLength: 1, maxLength: 4 })
        .map((mutations) => compress(mutate(mirrorTar, mutations))),
      25,
    ));

  it('survives a corrupted zstd stream that the manifest vouches for', () =>
    assertSurvives(
      'zstd corruption',
      fc
        .array(zstdMutation, { minLength: 1, maxLength: 3 })
        .map((mutations) => corruptZstd(mirrorArchive, mutations)),
      12,
    ));

  it('refuses a valid archive whose manifest lies about its size or sha256, with SNAPSHOT_CORRUPT', async () => {
    await fc.assert(
      fc.asyncProperty(lyingManifest, cuts, async (lie, cuts) => {
        const { settled } = await extractCase('lying manifest', lie, cuts);
        assert.ok(!settled.ok, 'a lying manifest was accepted');
        assertTypedFailure(settled.error, CORRUPT);
        assert.match((settled.error as Error).message, /does not match its manifest/);
      }),
      runs(10),
    );
  });

  it('downloadAndExtract: hostile archives and lying manifests leave no temp dir and the mirror untouched', async () => {
    await fc.assert(
      fc.asyncProperty(restoreCase, async (input) => {
        await plant(input);
        try {
          const settled = await settle('downloadAndExtract', (signal) =>
            downloadAndExtract({ store, repo, tempParent: layout.tmpDir, signal }),
          );
          record('downloadAndExtract', settled);
          assert.ok(!settled.ok, `restored: ${input.what}`);
          assertTypedFailure(settled.error, [input.expected]);
          assert.deepEqual(await readdir(layout.tmpDir), [], 'the temp dir is removed');
          await assertOutsideUntouched();
        } finally {
          await unplant(input);
        }
      }),
      runs(8),
    );
  });

  it('restoreOrClone: a ready mirror survives a hostile snapshot and a failing clone fallback', async () => {
    const metrics = new SidecarMetrics();
    const logger = silentLogger();
    const deps = {
      git: new ProcessGitRunner(),
      layout,
      snapshots: new StoreSnapshotService(store, logger),
      logger,
      metrics,
      cloneTimeoutMs: 60_000,
    };
    await fc.assert(
      fc.asyncProperty(restoreCase, async (input) => {
        await plant(input);
        try {
          const mirror = new Mirror({
            repo,
            upstream: join(root, 'no-such-upstream.git'),
            dir: mirrorDir,
            settings: {
              fetchIntervalMs: 300_000,
              snapshot: { writer: false, retain: 3 },
              access: 'Public',
              lfs: { prefetch: 'None' },
              fleet: {},
            },
          });
          mirror.readyFrom({ source: 'disk', head: undefined });
          const settled = await settle('restoreOrClone', (signal) =>
            restoreOrClone(deps, mirror, undefined, signal),
          );
          record('restoreOrClone', {
            ok: false,
            error: new GitMirrorError(input.expected, mirror.restore.error ?? 'no error recorded'),
          });
          assert.ok(!settled.ok, 'the clone fallback cannot succeed without an upstream');
          assert.ok(isGitMirrorError(settled.error), String(settled.error));
          assert.match(
            mirror.restore.error ?? '',
            new RegExp(`^${input.expected}: .*; then the clone failed`),
          );
          assert.equal(mirror.state, 'ready', 'the mirror stays ready');
          assert.deepEqual(await readdir(layout.tmpDir), [], 'no temp or retired dir is left');
          await assertOutsideUntouched();
        } finally {
          await unplant(input);
        }
      }),
      runs(3),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Mutations of the real archive

type TarMutation =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'field'; entry: number; field: FieldName; value: FieldValue; fix: boolean }
  | { op: 'truncate'; at: number }
  | { op: 'splice'; from: number; to: number; blocks: number }
  | { op: 'duplicate'; entry: number }
  | { op: 'insert'; entry: number; blocks: Buffer[] }
  | { op: 'drop-end' }
  | { op: 'append'; bytes: Uint8Array };

const fieldValue: Record<FieldName, fc.Arbitrary<FieldValue>> = {
  name: chaosPath,
  prefix: chaosPath,
  linkname: fc.oneof(linkTarget, chaosPath),
  typeflag: fc.constantFrom('0', '1', '2', '3', '4', '5', '6', '7', 'x', 'g', 'L', 'K', 'S', '\0', 'z'),
  size: fc.oneof(
    fc.nat(),
    fc.constant(0o77777777777),
    fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map((n) => base256(n, 12)),
    fc.uint8Array({ minLength: 12, maxLength: 12 }),
  ),
  mode: fc.oneof(fc.integer({ min: 0, max: 0o7777 }), fc.uint8Array({ minLength: 8, maxLength: 8 })),
  uid: fc.oneof(fc.nat(), fc.uint8Array({ minLength: 8, maxLength: 8 })),
  gid: fc.oneof(fc.nat(), fc.uint8Array({ minLength: 8, maxLength: 8 })),
  mtime: fc.oneof(
    fc.nat(),
    fc.bigInt({ min: -(2n ** 60n), max: 2n ** 60n }).map((n) => base256(n, 12)),
  ),
  checksum: fc.uint8Array({ minLength: 8, maxLength: 8 }),
  magic: fc.constantFrom('ustar\u000000', 'ustar  \0', 'xxxxxxxx', ''),
  uname: fc.string({ maxLength: 40 }),
  gname: fc.string({ maxLength: 40 }),
  devmajor: fc.nat(),
  devminor: fc.nat(),
};

const tarMutation: fc.Arbitrary<TarMutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.constantFrom(...(Object.keys(fieldValue) as FieldName[])).chain((field) =>
    fc.record({
      op: fc.constant('field' as const),
      entry: fc.nat(),
      field: fc.constant(field),
      value: fieldValue[field],
      fix: fc.boolean(),
    }),
  ),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({
    op: fc.constant('splice' as const),
    from: fc.nat(),
    to: fc.nat(),
    blocks: fc.integer({ min: 1, max: 4 }),
  }),
  fc.record({ op: fc.constant('duplicate' as const), entry: fc.nat() }),
  fc.record({
    op: fc.constant('insert' as const),
    entry: fc.nat(),
    blocks: fc.oneof(attackBlocks, chaosEntry),
  }),
  fc.constant({ op: 'drop-end' as const }),
  fc.record({ op: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 1024 }) }),
);

function mutate(original: Buffer, mutations: TarMutation[]): Buffer {
  return mutations.reduce(applyMutation, Buffer.from(original));
}

/** Applies one mutation; `tar` is a private copy, so in-place changes are fine. */
function applyMutation(tar: Buffer, m: TarMutation): Buffer {
  const offsets = headerOffsets(tar);
  const pick = (i: number) => offsets[i % offsets.length];
  switch (m.op) {
    case 'flip':
      if (tar.length > 0) tar[m.at % tar.length]! ^= 1 << m.bit;
      return tar;
    case 'field': {
      const at = pick(m.entry);
      if (at === undefined) return tar;
      setField(tar, at, m.field, m.value);
      if (m.fix) fixChecksum(tar, at);
      return tar;
    }
    case 'truncate':
      return tar.subarray(0, m.at % (tar.length + 1));
    case 'splice':
      return splice(tar, m.from, m.to, m.blocks);
    case 'duplicate': {
      const i = m.entry % Math.max(1, offsets.length);
      const start = offsets[i];
      if (start === undefined) return tar;
      const end = offsets[i + 1] ?? nextAfter(tar, start);
      return Buffer.concat([tar.subarray(0, end), tar.subarray(start, end), tar.subarray(end)]);
    }
    case 'insert': {
      const at = pick(m.entry) ?? 0;
      return Buffer.concat([tar.subarray(0, at), ...m.blocks, tar.subarray(at)]);
    }
    case 'drop-end': {
      let end = tar.length;
      while (end >= BLOCK && tar.subarray(end - BLOCK, end).every((b) => b === 0)) end -= BLOCK;
      return tar.subarray(0, end);
    }
    case 'append':
      return Buffer.concat([tar, m.bytes]);
  }
}

/** Copies `blocks` whole blocks from one block offset over another. */
function splice(tar: Buffer, from: number, to: number, blocks: number): Buffer {
  const count = Math.floor(tar.length / BLOCK);
  if (count === 0) return tar;
  const copy = Buffer.from(tar);
  const start = (from % count) * BLOCK;
  copy.copy(copy, (to % count) * BLOCK, start, Math.min(copy.length, start + blocks * BLOCK));
  return copy;
}

/** The offset just past the entry whose header is at `offset` (its body padded to blocks). */
function nextAfter(tar: Buffer, offset: number): number {
  const size = Number.parseInt(
    tar
      .subarray(offset + 124, offset + 136)
      .toString('latin1')
      .replace(/\0.*$/s, '')
      .trim(),
    8,
  );
  return Math.min(tar.length, offset + BLOCK + Math.ceil((Number.isFinite(size) ? size : 0) / BLOCK) * BLOCK);
}

// ---------------------------------------------------------------------------------------------
// Corruption of the zstd stream

type ZstdMutation =
  | { op: 'flip'; at: number; bit: number; inHeader: boolean }
  | { op: 'truncate'; at: number }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'overwrite'; at: number; bytes: Uint8Array }
  | { op: 'append'; bytes: Uint8Array }
  | { op: 'append-frame'; blocks: Buffer[] }
  | { op: 'prepend-skippable'; size: number };

const zstdMutation: fc.Arbitrary<ZstdMutation> = fc.oneof(
  fc.record({
    op: fc.constant('flip' as const),
    at: fc.nat(),
    bit: fc.integer({ min: 0, max: 7 }),
    inHeader: fc.boolean(),
  }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({
    op: fc.constant('insert' as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }),
  }),
  fc.record({
    op: fc.constant('overwrite' as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }),
  }),
  fc.record({ op: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 256 }) }),
  fc.record({
    op: fc.constant('append-frame' as const),
    blocks: attackBlocks.map((blocks) => [...blocks, END_OF_ARCHIVE]),
  }),
  fc.record({ op: fc.constant('prepend-skippable' as const), size: fc.integer({ min: 0, max: 600 }) }),
);

function corruptZstd(original: Buffer, mutations: ZstdMutation[]): Buffer {
  let data = Buffer.from(original);
  for (const m of mutations) {
    const at = (n: number) => n % (data.length + 1);
    switch (m.op) {
      case 'flip': {
        // the frame header (magic, descriptor, window) is the first few bytes
        const i = m.inHeader ? m.at % Math.min(18, data.length) : m.at % data.length;
        if (data.length > 0) data[i]! ^= 1 << m.bit;
        break;
      }
      case 'truncate':
        data = data.subarray(0, at(m.at));
        break;
      case 'insert':
        data = Buffer.concat([data.subarray(0, at(m.at)), m.bytes, data.subarray(at(m.at))]);
        break;
      case 'overwrite':
        data = Buffer.from(data);
        Buffer.from(m.bytes).copy(data, at(m.at));
        break;
      case 'append':
        data = Buffer.concat([data, m.bytes]);
        break;
      case 'append-frame':
        data = Buffer.concat([data, compress(Buffer.concat(m.blocks))]);
        break;
      case 'prepend-skippable': {
        const frame = Buffer.alloc(8 + m.size);
        frame.writeUInt32LE(0x184d2a50, 0);
        frame.writeUInt32LE(m.size, 4);
        data = Buffer.concat([frame, data]);
        break;
      }
    }
  }
  return data;
}

// ---------------------------------------------------------------------------------------------
// Lying manifests, and cases planted in the store

const lyingManifest = fc
  .record({
    lie: fc.constantFrom('size', 'sha256', 'both'),
    shrink: fc.integer({ min: 1, max: 1 << 20 }),
    grow: fc.integer({ min: 1, max: 1 << 20 }),
    larger: fc.boolean(),
    bit: fc.integer({ min: 0, max: 255 }),
  })
  .map(({ lie, shrink, grow, larger, bit }) => {
    const size = mirrorArchive.length;
    const sizeBytes = larger ? size + grow : Math.max(0, size - shrink);
    const digest = Buffer.from(sha256(mirrorArchive), 'hex');
    digest[bit >> 3]! ^= 1 << (bit & 7);
    return {
      archive: mirrorArchive,
      sizeBytes: lie === 'sha256' ? size : sizeBytes,
      sha256: lie === 'size' ? sha256(mirrorArchive) : digest.toString('hex'),
    };
  });

interface RestoreCase extends Manifested {
  what: string;
  expected: ErrorCode;
  key?: string;
}

const restoreCase: fc.Arbitrary<RestoreCase> = fc.oneof(
  attackArchive.map(({ what, archive }) => ({ what, archive, expected: 'SNAPSHOT_UNSAFE_ENTRY' as const })),
  lyingManifest.map((lie) => ({ what: 'lying manifest', ...lie, expected: 'SNAPSHOT_CORRUPT' as const })),
);

/** Stores the archive and a manifest that vouches for it (or lies), as the attacker would. */
async function plant(input: RestoreCase): Promise<void> {
  input.key = archiveKey(repo, new Date(Date.parse('2026-01-01T00:00:00Z') + counter++ * 1000), mirrorCommit);
  await store.putBytes(input.key, input.archive);
  const manifest: SnapshotManifest = {
    key: input.key,
    commit: mirrorCommit,
    createdAt: new Date().toISOString(),
    sizeBytes: input.sizeBytes ?? input.archive.length,
    sha256: input.sha256 ?? sha256(input.archive),
    format: SNAPSHOT_FORMAT_V1,
  };
  await store.putBytes(manifestKey(repo), Buffer.from(JSON.stringify(manifest)));
}

async function unplant(input: RestoreCase): Promise<void> {
  if (input.key) await store.delete(input.key);
}

// ---------------------------------------------------------------------------------------------
// Found by this fuzzer in the extract worker (and node-tar's Parser), and fixed there.

describe('extraction bugs found by fuzzing', () => {
  // node-tar appended everything after the marker to one buffer: 64 MiB of zeros behind a
  // 2 KB archive took 10 s, 1 GiB would have taken an hour. Now only tar's record padding may
  // follow (ignored, as tar does), and more is refused before it is buffered.
  const afterMarker = async (trailing: Buffer) => {
    const tar = Buffer.concat([
      entry({ name: 'HEAD', typeflag: '0' }, Buffer.from('ref: refs/heads/main\n')),
      END_OF_ARCHIVE,
      trailing,
    ]);
    const archive = compress(tar);
    const target = join(work, `target-${counter++}`);
    await mkdir(target);
    try {
      return await extractArchive(Readable.from([archive]), target, {
        expectedSize: archive.length,
        expectedSha256: sha256(archive),
        signal: AbortSignal.timeout(SETTLE_MS),
      }).then(
        () => undefined,
        (err: unknown) => err,
      );
    } finally {
      await rm(target, { recursive: true, force: true });
      await assertOutsideUntouched();
    }
  };

  it('accepts the zero padding tar writes after the end-of-archive marker', async () => {
    assert.equal(await afterMarker(Buffer.alloc(9 * 1024)), undefined);
  });

  it('refuses megabytes after the end-of-archive marker', async () => {
    const outcome = await afterMarker(Buffer.alloc(40 << 20));
    assertTypedFailure(outcome, CORRUPT);
    assert.match((outcome as Error).message, /after the end-of-archive marker/);
  });

  it('refuses a path that fits the policy but not the kernel under the target as SNAPSHOT_UNSAFE_ENTRY', async () => {
    // 16 names of 255 bytes: 4095 bytes, within PATH_MAX alone but not after the target's path
    const path = Array.from({ length: 16 }, (_, i) => `n${i}`.padEnd(255, 'n')).join('/');
    const archive = compress(Buffer.concat([...fileEntry(path, 'pax', Buffer.from('x')), END_OF_ARCHIVE]));
    const { settled } = await extractCase('todo', { archive });
    assert.ok(!settled.ok);
    assertTypedFailure(settled.error, UNSAFE);
  });

  it('names an unsupported entry type when refusing it', async () => {
    const archive = compress(
      Buffer.concat([entry({ name: 'sparse', typeflag: 'S' }, Buffer.from('abc')), END_OF_ARCHIVE]),
    );
    const { settled } = await extractCase('todo', { archive });
    assert.ok(!settled.ok);
    assertTypedFailure(settled.error, UNSAFE);
    assert.doesNotMatch((settled.error as Error).message, /oversized metadata header/);
  });
});
