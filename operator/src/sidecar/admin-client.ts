import type {
  ErrorBody,
  MirrorList,
  MirrorSpec,
  MirrorStatus,
  RestoreRequest,
} from '../../../core/admin-api.ts';
import { isWireErrorCode } from '../../../core/errors.ts';
import { OperatorError, type OperatorErrorCode } from '../errors/operator-error.ts';

/** One sidecar's admin endpoint. `pod` (namespace/name) names it in errors and logs. */
export interface SidecarTarget {
  baseUrl: string;
  token: string;
  pod: string;
}

/**
 * The sidecar admin API (docs/admin-api.md) as the reconcilers use it. Every method throws
 * OperatorError with a SIDECAR_* code; the reconcilers' work queue does the retrying.
 */
export interface SidecarClient {
  listMirrors(target: SidecarTarget): Promise<MirrorStatus[]>;
  /** undefined when the sidecar does not hold the mirror. */
  getMirror(target: SidecarTarget, id: string): Promise<MirrorStatus | undefined>;
  putMirror(target: SidecarTarget, id: string, spec: MirrorSpec): Promise<MirrorStatus>;
  restore(target: SidecarTarget, id: string, request: RestoreRequest): Promise<MirrorStatus>;
  /**
   * Asks for a fetch from upstream now and returns at once: it joins a fetch that is queued and
   * runs after one that is running. A mirror that is not ready yet accepts and ignores it.
   */
  fetchMirror(target: SidecarTarget, id: string): Promise<MirrorStatus>;
  /** Succeeds when the mirror is already gone. */
  deleteMirror(target: SidecarTarget, id: string): Promise<void>;
}

export interface HttpSidecarClientOptions {
  timeoutMs: number;
  /** Called once per request with the outcome: 'ok' or an error code. */
  observe?: (method: string, result: string) => void;
}

/** SidecarClient over HTTP: bearer token, JSON, a timeout on every call. */
export class HttpSidecarClient implements SidecarClient {
  readonly #o: HttpSidecarClientOptions;

  constructor(options: HttpSidecarClientOptions) {
    this.#o = options;
  }

  async listMirrors(target: SidecarTarget): Promise<MirrorStatus[]> {
    return (await this.#request<MirrorList>(target, 'GET', '/v1/mirrors')).mirrors;
  }

  async getMirror(target: SidecarTarget, id: string): Promise<MirrorStatus | undefined> {
    try {
      return await this.#request<MirrorStatus>(target, 'GET', `/v1/mirrors/${id}`);
    } catch (err) {
      if (err instanceof OperatorError && err.code === 'SIDECAR_NOT_FOUND') return undefined;
      throw err;
    }
  }

  putMirror(target: SidecarTarget, id: string, spec: MirrorSpec): Promise<MirrorStatus> {
    return this.#request<MirrorStatus>(target, 'PUT', `/v1/mirrors/${id}`, spec);
  }

  restore(target: SidecarTarget, id: string, request: RestoreRequest): Promise<MirrorStatus> {
    return this.#request<MirrorStatus>(target, 'POST', `/v1/mirrors/${id}/restore`, request);
  }

  fetchMirror(target: SidecarTarget, id: string): Promise<MirrorStatus> {
    return this.#request<MirrorStatus>(target, 'POST', `/v1/mirrors/${id}/fetch`);
  }

  async deleteMirror(target: SidecarTarget, id: string): Promise<void> {
    try {
      await this.#request<undefined>(target, 'DELETE', `/v1/mirrors/${id}`);
    } catch (err) {
      if (!(err instanceof OperatorError && err.code === 'SIDECAR_NOT_FOUND')) throw err;
    }
  }

  async #request<T>(target: SidecarTarget, method: string, path: string, body?: unknown): Promise<T> {
    const what = `${method} ${path} on pod ${target.pod}`;
    try {
      const result = await this.#send<T>(target, method, path, body, what);
      this.#o.observe?.(method, 'ok');
      return result;
    } catch (err) {
      this.#o.observe?.(method, err instanceof OperatorError ? err.code : 'SIDECAR_FAILED');
      throw err;
    }
  }

  async #send<T>(
    target: SidecarTarget,
    method: string,
    path: string,
    body: unknown,
    what: string,
  ): Promise<T> {
    let response: Response;
    try {
      response = await fetch(`${target.baseUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${target.token}`,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.#o.timeoutMs),
      });
    } catch (err) {
      const timedOut = err instanceof DOMException && err.name === 'TimeoutError';
      const code = timedOut ? 'SIDECAR_TIMEOUT' : 'SIDECAR_UNREACHABLE';
      const detail = timedOut ? `no answer within ${this.#o.timeoutMs} ms` : causeOf(err);
      throw new OperatorError(code, `${what}: ${detail}`, { cause: err });
    }
    const text = await response.text();
    if (!response.ok) throw httpError(what, response.status, text);
    if (response.status === 204 || text === '') return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      throw new OperatorError('SIDECAR_BAD_RESPONSE', `${what}: answer is not JSON`, { cause: err });
    }
  }
}

function causeOf(err: unknown): string {
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err;
  return cause instanceof Error ? cause.message : String(cause);
}

/**
 * The error for a non-2xx answer: `what` names the call, `text` is the body. Exported so the
 * fake sidecars of the unit tests fail the same way a real answer does.
 */
export function httpError(what: string, status: number, text: string): OperatorError {
  let remote: ErrorBody['error'] | undefined;
  try {
    remote = (JSON.parse(text) as ErrorBody).error;
  } catch {
    remote = undefined;
  }
  const code: OperatorErrorCode =
    status === 401 || status === 403
      ? 'SIDECAR_UNAUTHORIZED'
      : status === 404
        ? 'SIDECAR_NOT_FOUND'
        : status < 500
          ? 'SIDECAR_REJECTED'
          : 'SIDECAR_FAILED';
  const detail = remote ? `${remote.code}: ${String(remote.message).slice(0, 300)}` : `HTTP ${status}`;
  const remoteCode = isWireErrorCode(remote?.code) ? remote.code : undefined;
  return new OperatorError(code, `${what}: ${detail}`, { status, remoteCode });
}
