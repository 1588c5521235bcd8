import express, { type Request, type Response, type Router } from 'express';
import type { MirrorList, StorageStatus, UpstreamHostStatus } from '../../../core/admin-api.ts';
import { parseRepoId } from '../../../core/repo-id.ts';
import { GitMirrorError } from '../errors/gitmirror-error.ts';
import type { Mirror } from '../mirrors/mirror.ts';
import type { MirrorManager } from '../mirrors/mirror-manager.ts';
import { parseMirrorSpec, parseRestoreRequest } from './admin-input.ts';

const ACTIONS = ['restore', 'snapshot', 'fetch'] as const;
type Action = (typeof ACTIONS)[number];

/**
 * `/v1/mirrors[/{id}[/{action}]]`. Ids contain slashes, so the path is split by hand:
 * POST routes end in an action; GET, PUT and DELETE take the whole rest as the id.
 */
export function adminRouter(
  mirrors: MirrorManager,
  budgets?: { storage: () => StorageStatus; upstreams: () => UpstreamHostStatus[] },
): Router {
  const router = express.Router();
  router.use(express.json({ limit: '64kb' }));
  router.get('/v1/mirrors', (_req, res) => {
    const body: MirrorList = {
      mirrors: mirrors.list().map((m) => m.status()),
      onDemand: mirrors.onDemandStatus(),
      storage: budgets?.storage(),
      upstreams: budgets?.upstreams(),
    };
    res.json(body);
  });
  router.get('/v1/mirrors/*id', (req, res) => {
    res.json(found(mirrors, idOf(req)).status());
  });
  router.put('/v1/mirrors/*id', (req, res) => {
    const { mirror, created } = mirrors.applySpec(parseRepoId(idOf(req)), parseMirrorSpec(req.body));
    res.status(created ? 201 : 200).json(mirror.status());
  });
  router.delete('/v1/mirrors/*id', async (req, res) => {
    await mirrors.remove(found(mirrors, idOf(req)));
    res.status(204).end();
  });
  router.post('/v1/mirrors/*id', async (req, res) => {
    const parts = idOf(req).split('/');
    const action = parts.pop() as Action;
    if (!ACTIONS.includes(action))
      throw new GitMirrorError('NOT_FOUND', `unknown action; use one of ${ACTIONS.join(', ')}`);
    await runAction(mirrors, found(mirrors, parts.join('/')), action, req, res);
  });
  return router;
}

async function runAction(
  mirrors: MirrorManager,
  mirror: Mirror,
  action: Action,
  req: Request,
  res: Response,
) {
  const wait = req.query.wait === 'true' || req.query.wait === '1';
  if (action === 'restore') {
    const request = parseRestoreRequest(req.body);
    if (mirror.ready && !request.force) {
      res.status(200).json(mirror.status());
      return;
    }
    const warming = mirrors.warm(mirror, request);
    if (wait) await warming;
    res.status(wait ? 200 : 202).json(mirror.status());
    return;
  }
  if (action === 'fetch') {
    const fetching = mirrors.fetch(mirror, { checkUpstream: true });
    if (wait) await fetching;
    else fetching.catch(() => {});
    res.status(wait ? 200 : 202).json(mirror.status());
    return;
  }
  const publishing = mirrors.snapshot(mirror);
  if (!wait) {
    publishing.catch(() => {});
    res.status(202).json(mirror.status());
    return;
  }
  const outcome = await publishing;
  res.status(200).json({ result: outcome.result, manifest: outcome.manifest });
}

function idOf(req: Request): string {
  const parts = (req.params as { id: string[] }).id;
  return parts.join('/');
}

function found(mirrors: MirrorManager, id: string): Mirror {
  const mirror = mirrors.get(parseRepoId(id).id);
  if (!mirror) throw new GitMirrorError('NOT_FOUND', `no mirror ${id}`);
  return mirror;
}
