import type { GitRunner } from '../git/git-runner.ts';
import { type LfsObjectId, pointerBlobId } from './oid.ts';

const MAX_REMEMBERED = 100_000;
const CAT_FILE_TIMEOUT_MS = 30_000;

/**
 * Which LFS objects belong to which repository. The object store is shared by every
 * repository (content-addressed), so holding an object is not enough to hand it to a client
 * of some repository: an oid that only a private repository references must not be readable
 * through a public one. An object belongs to a repository when
 *
 * - its mirror holds the object's canonical pointer blob (git-lfs writes pointers in exactly
 *   one form, so the blob's git id follows from oid and size: one `cat-file` lookup proves
 *   the pointer was in the repository's history, fleet-wide and across restarts), or
 * - upstream's batch API recently answered a download action for it in that repository.
 *
 * Anything else is asked of upstream.
 */
export class LfsMembership {
  private readonly git: GitRunner;
  private readonly remembered = new Map<string, true>();
  private readonly formats = new Map<string, Promise<'sha1' | 'sha256'>>();

  constructor(options: { git: GitRunner }) {
    this.git = options.git;
  }

  /** Upstream vouched for these objects in this repository. */
  remember(repo: string, oids: Iterable<string>): void {
    for (const oid of oids) {
      const key = `${repo}\0${oid}`;
      this.remembered.delete(key);
      this.remembered.set(key, true);
      if (this.remembered.size > MAX_REMEMBERED) this.remembered.delete(this.remembered.keys().next().value!);
    }
  }

  /** The oids among `objects` known to belong to `repo` (its mirror at `mirrorDir`, when ready). */
  async known(repo: string, mirrorDir: string | undefined, objects: LfsObjectId[]): Promise<Set<string>> {
    const known = new Set<string>();
    const unknown: LfsObjectId[] = [];
    for (const object of objects) {
      if (this.remembered.has(`${repo}\0${object.oid}`)) known.add(object.oid);
      else unknown.push(object);
    }
    if (unknown.length === 0 || !mirrorDir) return known;
    for (const oid of await this.inMirror(mirrorDir, unknown).catch(() => [])) known.add(oid);
    return known;
  }

  /** Objects whose canonical pointer blob the mirror holds. */
  private async inMirror(dir: string, objects: LfsObjectId[]): Promise<string[]> {
    const format = await this.objectFormat(dir);
    const byBlob = new Map(objects.map((o) => [pointerBlobId(o, format), o.oid]));
    const { stdout } = await this.git.run({
      args: ['cat-file', '--batch-check=%(objectname) %(objecttype)'],
      cwd: dir,
      stdin: `${[...byBlob.keys()].join('\n')}\n`,
      timeoutMs: CAT_FILE_TIMEOUT_MS,
    });
    const found: string[] = [];
    for (const line of stdout.split('\n')) {
      const [blob, type] = line.split(' ');
      const oid = blob && type === 'blob' ? byBlob.get(blob) : undefined;
      if (oid) found.push(oid);
    }
    return found;
  }

  private objectFormat(dir: string): Promise<'sha1' | 'sha256'> {
    let format = this.formats.get(dir);
    if (!format) {
      format = this.git
        .run({ args: ['rev-parse', '--show-object-format'], cwd: dir, timeoutMs: CAT_FILE_TIMEOUT_MS })
        .then(({ stdout }) => (stdout.trim() === 'sha256' ? 'sha256' : 'sha1'));
      // A failure (mirror being replaced) is not remembered.
      format.catch(() => this.formats.delete(dir));
      this.formats.set(dir, format);
    }
    return format;
  }
}
