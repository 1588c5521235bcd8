import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { http } from '../../core/node-http.ts';
import { isSigned, providerOf } from './webhook.ts';
import {
  MAX_WEBHOOK_BODY_BYTES,
  unsignedAnswer,
  type WebhookAnswer,
  type WebhookReceiver,
  type WebhookTarget,
} from './webhook-receiver.ts';

/** Paths deliveries are accepted on; the provider is told by the headers, the path is for people. */
export const WEBHOOK_PATHS = [
  '/webhooks',
  '/webhooks/github',
  '/webhooks/gitea',
  '/webhooks/gitlab',
] as const;

/**
 * Serves a `WebhookReceiver` over plain HTTP: `POST` on `WEBHOOK_PATHS`, body bounded (413
 * beyond GitHub's 25 MB cap, without reading the rest), slow clients cut off, the answer as
 * JSON. `observe` sees every answer (metrics, logs); it is never given the body or a secret.
 */
export function webhookHandler<T extends WebhookTarget>(
  receiver: WebhookReceiver<T>,
  observe?: (answer: WebhookAnswer) => void,
): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!.replace(/\/+$/, '');
    if (!(WEBHOOK_PATHS as readonly string[]).includes(path)) {
      reply(res, 404, { message: `deliveries go to POST ${WEBHOOK_PATHS[1]}` });
      return;
    }
    if (req.method !== 'POST') {
      reply(res, 405, { message: 'webhook deliveries are POSTed' }, { allow: 'POST' });
      return;
    }
    const provider = providerOf(req.headers);
    if (!provider || !isSigned(provider, req.headers)) {
      // Refused before the body is read: an unsigned request costs no memory.
      const answer = unsignedAnswer();
      observe?.(answer);
      reply(res, answer.status, answer.body, { connection: 'close' });
      return;
    }
    readBounded(req, MAX_WEBHOOK_BODY_BYTES)
      .then(async (body) => {
        if (body === undefined) {
          reply(res, 413, { message: 'payload too large' }, { connection: 'close' });
          return;
        }
        const answer = await receiver.receive({ headers: req.headers, body });
        observe?.(answer);
        reply(res, answer.status, answer.body);
      })
      .catch(() => {
        if (!res.headersSent) reply(res, 500, { message: 'the delivery could not be handled' });
        else res.destroy();
      });
  };
}

export function startWebhookServer<T extends WebhookTarget>(
  listen: { host: string; port: number },
  receiver: WebhookReceiver<T>,
  observe?: (answer: WebhookAnswer) => void,
): Promise<Server> {
  const server = http.createServer(webhookHandler(receiver, observe));
  // GitHub gives up after 10 s; nothing legitimate takes longer to send.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve(server));
  });
}

function reply(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(`${JSON.stringify(body)}\n`);
}

/** The whole body, or undefined as soon as it passes `limit` (the rest is not read). */
async function readBounded(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
