import type { Agent, IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Request, Response } from 'express';
import { http, https } from '../../../core/node-http.ts';
import { GitMirrorError, redactUrl } from '../errors/gitmirror-error.ts';
import type { HostGate } from '../upstream/host-gate.ts';

export interface UpstreamRequest {
  method: 'GET' | 'POST';
  url: string;
  headers: Record<string, string>;
  body?: Readable | Buffer;
  /** Idle timeout: no bytes either way for this long aborts the request. */
  idleTimeoutMs: number;
  /**
   * The upstream host's gate: while it is backed off the request is not sent (UPSTREAM_THROTTLED,
   * answered 503 with Retry-After), and an answer asking us to slow down backs it off. Requests
   * made for a client do not take turns: the client's own request would have reached upstream anyway.
   */
  gate?: HostGate;
}

const agents: Partial<Record<'http:' | 'https:', Agent>> = {};
function agentFor(protocol: 'http:' | 'https:'): Agent {
  agents[protocol] ??= new (protocol === 'http:' ? http : https()).Agent({ keepAlive: true, maxSockets: 64 });
  return agents[protocol];
}

/** Request headers passed to upstream: what git needs, and the client's credentials. */
const FORWARDED_REQUEST_HEADERS = [
  'accept',
  'accept-encoding',
  'content-type',
  'content-encoding',
  'git-protocol',
  'user-agent',
  'authorization',
];

/** Response headers passed back; hop-by-hop and cookies are not. */
const FORWARDED_RESPONSE_HEADERS = [
  'content-type',
  'content-encoding',
  'cache-control',
  'expires',
  'pragma',
  'www-authenticate',
  'content-length',
  // A throttled upstream's wait reaches the client too.
  'retry-after',
];

export function forwardedHeaders(req: Request): Record<string, string> {
  const headers: Record<string, string> = { via: '1.1 gitmirror' };
  for (const name of FORWARDED_REQUEST_HEADERS) {
    const value = req.get(name);
    if (value !== undefined) headers[name] = value;
  }
  return headers;
}

/**
 * Sends one request upstream and resolves with the response head. Never follows
 * redirects: the caller decides, so a redirect can never carry the cache to a host
 * outside the allowed list.
 */
export async function requestUpstream(request: UpstreamRequest): Promise<IncomingMessage> {
  request.gate?.assertOpen();
  const response = await send(request);
  request.gate?.observe({ status: response.statusCode ?? 0, headers: response.headers });
  return response;
}

function send(request: UpstreamRequest): Promise<IncomingMessage> {
  const url = new URL(request.url);
  const protocol = url.protocol === 'http:' ? 'http:' : 'https:';
  const transport = protocol === 'http:' ? http : https();
  return new Promise((resolve, reject) => {
    const req = transport.request(url, {
      method: request.method,
      headers: request.headers,
      agent: agentFor(protocol),
      timeout: request.idleTimeoutMs,
    });
    req.on('timeout', () =>
      req.destroy(new GitMirrorError('UPSTREAM_FAILED', `upstream ${redactUrl(request.url)} timed out`)),
    );
    req.on('error', (err) =>
      reject(
        err instanceof GitMirrorError
          ? err
          : new GitMirrorError('UPSTREAM_FAILED', `upstream request failed: ${err.message}`),
      ),
    );
    req.on('response', resolve);
    if (request.body === undefined) req.end();
    else if (Buffer.isBuffer(request.body)) req.end(request.body);
    else pipeline(request.body, req).catch((err: Error) => req.destroy(err));
  });
}

/**
 * Copies status and headers of an upstream answer to the client. A redirect to an allowed
 * host is rewritten to go through the cache; any other redirect becomes a 502.
 */
export function writeUpstreamHead(
  upstream: { statusCode?: number; headers: IncomingMessage['headers'] },
  res: Response,
  rewriteLocation: (location: string) => string | undefined,
): boolean {
  const location = upstream.headers.location;
  const status = upstream.statusCode ?? 502;
  if (status >= 300 && status < 400 && location) {
    const rewritten = rewriteLocation(location);
    if (!rewritten) {
      res.status(502).json({
        error: { code: 'HOST_NOT_ALLOWED', message: 'upstream redirected to a host that is not allowed' },
      });
      return false;
    }
    res.setHeader('location', rewritten);
  }
  res.status(status);
  for (const name of FORWARDED_RESPONSE_HEADERS) {
    const value = upstream.headers[name];
    if (value !== undefined) res.setHeader(name, value);
  }
  return true;
}
