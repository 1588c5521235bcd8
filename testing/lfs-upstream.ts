import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { LfsObjectId } from '../sidecar/src/lfs/oid.ts';
import { type GitUpstream, startGitUpstream } from './git-upstream.ts';

/**
 * A stand-in Git LFS server for `npm test` (the end-to-end suite uses git-lfs's own
 * lfstest-gitserver): git smart HTTP through `git http-backend`, plus the batch API, basic
 * transfers and the locks API at `/{repo}.git/info/lfs`, checking what a real server checks:
 * the LFS media type, Basic credentials (401 with `LFS-Authenticate`, 403 for wrong ones),
 * sha256 and size of uploads, and a per-object grant header on downloads (like GitHub's
 * RemoteAuth) that only its batch answer hands out. Objects can be made to misbehave.
 */
export type ObjectFault = 'corrupt' | 'short' | 'slow';

export interface LfsUpstream {
  git: GitUpstream;
  host: string;
  url(repo: string): string;
  /** Stores an object in a repository directly, as if pushed. */
  add(repo: string, content: Buffer): LfsObjectId;
  has(repo: string, oid: string): boolean;
  /** Downloads of an object's bytes that upstream served (any outcome). */
  downloads(oid: string): number;
  batches: { repo: string; operation: string; oids: string[]; authorized: boolean }[];
  lockRequests: number;
  fault(oid: string, fault: ObjectFault | undefined): void;
  close(): Promise<void>;
}

const MEDIA = 'application/vnd.git-lfs+json';
const LFS_PATH = /^\/(.+?)\.git\/info\/lfs(\/.*)$/;
const STORAGE_PATH = /^\/_storage\/(.+)\/([0-9a-f]{64})$/;

export async function startLfsUpstream(
  root: string,
  options: { credentials?: { user: string; password: string }; listenHost?: string } = {},
): Promise<LfsUpstream> {
  const objects = new Map<string, Map<string, Buffer>>();
  const downloads = new Map<string, number>();
  const faults = new Map<string, ObjectFault>();
  const grants = new Set<string>();
  const batches: LfsUpstream['batches'] = [];
  let lockRequests = 0;
  let host = '';
  const store = (repo: string) => {
    const m = objects.get(repo) ?? new Map<string, Buffer>();
    objects.set(repo, m);
    return m;
  };
  const expected = options.credentials
    ? `Basic ${Buffer.from(`${options.credentials.user}:${options.credentials.password}`).toString('base64')}`
    : undefined;

  const lfsApi = async (
    req: IncomingMessage,
    res: ServerResponse,
    repo: string,
    sub: string,
    body: Buffer,
  ) => {
    if (!(req.headers.accept ?? '').includes(MEDIA))
      return json(res, 406, { message: 'Accept must be the LFS type' });
    const authorization = req.headers.authorization;
    if (expected && !authorization)
      return json(
        res,
        401,
        { message: 'credentials needed' },
        { 'LFS-Authenticate': 'Basic realm="stand-in"' },
      );
    if (expected && authorization !== expected) return json(res, 403, { message: 'wrong credentials' });
    if (sub.startsWith('/locks')) {
      lockRequests++;
      if (sub === '/locks/verify') return json(res, 200, { ours: [], theirs: [] });
      if (req.method === 'POST')
        return json(res, 201, {
          lock: { id: '1', path: JSON.parse(body.toString()).path, owner: { name: 'a' } },
        });
      return json(res, 200, { locks: [] });
    }
    if (sub !== '/objects/batch' || req.method !== 'POST')
      return json(res, 404, { message: 'no such endpoint' });
    const request = JSON.parse(body.toString()) as { operation: string; objects: LfsObjectId[] };
    batches.push({
      repo,
      operation: request.operation,
      oids: request.objects.map((o) => o.oid),
      authorized: authorization === expected,
    });
    const held = store(repo);
    const answer = request.objects.map(({ oid, size }) => {
      const grant = randomBytes(8).toString('hex');
      grants.add(grant);
      const action = { href: `http://${host}/_storage/${repo}/${oid}`, header: { 'X-Storage-Grant': grant } };
      if (request.operation === 'upload')
        return held.has(oid) ? { oid, size } : { oid, size, actions: { upload: action } };
      const content = held.get(oid);
      if (!content) return { oid, size, error: { code: 404, message: 'Object does not exist' } };
      return { oid, size: content.length, actions: { download: { ...action, expires_in: 3600 } } };
    });
    return json(res, 200, { transfer: 'basic', objects: answer, hash_algo: 'sha256' });
  };

  const storage = async (
    req: IncomingMessage,
    res: ServerResponse,
    repo: string,
    oid: string,
    body: Buffer,
  ) => {
    if (!grants.has(String(req.headers['x-storage-grant']))) return json(res, 403, { message: 'no grant' });
    if (req.method === 'PUT') {
      if (createHash('sha256').update(body).digest('hex') !== oid)
        return json(res, 422, { message: 'bad hash' });
      store(repo).set(oid, body);
      res.writeHead(200).end();
      return;
    }
    downloads.set(oid, (downloads.get(oid) ?? 0) + 1);
    const content = store(repo).get(oid);
    if (!content) return json(res, 404, { message: 'not found' });
    await serveObject(res, content, faults.get(oid));
  };

  const git = await startGitUpstream(root, {
    listenHost: options.listenHost,
    extraRoutes: async (req, res, url, body) => {
      const lfs = LFS_PATH.exec(url.pathname);
      if (lfs) {
        await lfsApi(req, res, lfs[1]!, lfs[2]!, body);
        return true;
      }
      const object = STORAGE_PATH.exec(url.pathname);
      if (object) {
        await storage(req, res, object[1]!, object[2]!, body);
        return true;
      }
      return false;
    },
  });
  host = git.host;
  return {
    git,
    host,
    url: git.url,
    add(repo, content) {
      const oid = createHash('sha256').update(content).digest('hex');
      store(repo).set(oid, content);
      return { oid, size: content.length };
    },
    has: (repo, oid) => store(repo).has(oid),
    downloads: (oid) => downloads.get(oid) ?? 0,
    batches,
    get lockRequests() {
      return lockRequests;
    },
    fault(oid, fault) {
      if (fault) faults.set(oid, fault);
      else faults.delete(oid);
    },
    close: () => git.close(),
  };
}

async function serveObject(
  res: ServerResponse,
  content: Buffer,
  fault: ObjectFault | undefined,
): Promise<void> {
  res.writeHead(200, {
    'Content-Type': 'application/octet-stream',
    'Content-Length': String(content.length),
  });
  if (fault === 'corrupt') {
    const copy = Buffer.from(content);
    copy[copy.length >> 1]! ^= 0xff;
    res.end(copy);
  } else if (fault === 'short') {
    res.write(content.subarray(0, content.length >> 1));
    await new Promise((r) => setTimeout(r, 20));
    res.destroy();
  } else if (fault === 'slow') {
    for (let at = 0; at < content.length; at += 256 * 1024) {
      if (!res.write(content.subarray(at, at + 256 * 1024))) await new Promise((r) => res.once('drain', r));
      await new Promise((r) => setTimeout(r, 25));
    }
    res.end();
  } else {
    res.end(content);
  }
}

function json(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { 'Content-Type': MEDIA, ...headers }).end(JSON.stringify(body));
}
