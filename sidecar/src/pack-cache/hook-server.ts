import { chmod, mkdir, unlink } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeError } from '../errors/gitmirror-error.ts';
import type { Logger } from '../log/logger.ts';
import {
  type HookReply,
  type HookRequest,
  MAX_HEADER_BYTES,
  parseHookRequest,
  SOCKET_ENV,
} from './hook-protocol.ts';
import type { PackCache } from './pack-cache.ts';
import type { PackLease } from './pack-entry.ts';
import { parsePackObjectsArgs } from './pack-request.ts';
import { SpliceTicket } from './splice-ticket.ts';

export const HOOK_SCRIPT = fileURLToPath(new URL('./pack-objects-hook.mjs', import.meta.url));
/** Longest path a Unix socket address takes on Linux (sun_path is 108 bytes, NUL included). */
export const MAX_SOCKET_PATH = 107;

export interface HookServerOptions {
  socketPath: string;
  cache: PackCache;
  /** The mirror a hook's working directory is, or undefined for anything else. */
  resolveRepository(dir: string): { repoId: string; dir: string } | undefined;
  logger: Logger;
  /** pack-objects' stdin above this is not cached (a fetch with a million haves). */
  maxStdinBytes?: number;
}

/**
 * The sidecar's end of the hook socket. Each connection is one pack-objects run: the
 * request names the repository (the hook's working directory), pack-objects' arguments and
 * stdin; the answer is a lease on a cached pack, streamed as the hook reads it, or a bypass.
 */
export class PackHookServer {
  private readonly options: HookServerOptions;
  private readonly server: Server;
  private readonly tickets = new Map<string, SpliceTicket>();
  private readonly sockets = new Set<Socket>();

  private constructor(options: HookServerOptions) {
    this.options = options;
    this.server = createServer((socket) => this.accept(socket));
  }

  static async listen(options: HookServerOptions): Promise<PackHookServer> {
    if (Buffer.byteLength(options.socketPath) > MAX_SOCKET_PATH)
      throw new Error(
        `the pack cache socket path is longer than ${MAX_SOCKET_PATH} bytes: ${options.socketPath}`,
      );
    await mkdir(dirname(options.socketPath), { recursive: true, mode: 0o700 });
    await unlink(options.socketPath).catch(() => {});
    const hooks = new PackHookServer(options);
    await new Promise<void>((resolve, reject) => {
      hooks.server.once('error', reject);
      hooks.server.listen(options.socketPath, () => resolve());
    });
    await chmod(options.socketPath, 0o600);
    return hooks;
  }

  /** Arguments before `upload-pack` that make it run the hook instead of pack-objects. */
  uploadPackArgs(): string[] {
    return uploadPackHookArgs();
  }

  /** Environment upload-pack passes on to the hook. */
  env(): Record<string, string> {
    return { [SOCKET_ENV]: this.options.socketPath };
  }

  expectSplice(): SpliceTicket {
    const ticket = new SpliceTicket((t) => {
      this.tickets.delete(t.id);
      t.handedOver?.lease.release();
    });
    this.tickets.set(ticket.id, ticket);
    return ticket;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await unlink(this.options.socketPath).catch(() => {});
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => {});
    readRequest(socket, this.options.maxStdinBytes ?? 32 * 1024 * 1024)
      .then(({ request, stdin }) => this.answer(socket, request, stdin))
      .catch((err: unknown) => {
        this.options.logger.warn({ err: describeError(err) }, 'pack cache hook: bad request');
        reply(socket, { t: 'bypass', reason: 'unreadable request' });
        socket.end();
      });
  }

  private async answer(socket: Socket, request: HookRequest, stdin: Buffer): Promise<void> {
    const bypass = (reason: string) => {
      reply(socket, { t: 'bypass', reason });
      socket.end();
    };
    const parsed = parsePackObjectsArgs(request.args.slice(1), stdin);
    if (request.args[0] !== 'git' || 'unsupported' in parsed) {
      this.options.cache.noteBypass('unsupported');
      return bypass('unsupported' in parsed ? parsed.unsupported : 'not a git command');
    }
    const repo = this.options.resolveRepository(request.dir);
    if (!repo) {
      this.options.cache.noteBypass('unknown_repository');
      return bypass('not a mirror of this sidecar');
    }
    const acquired = this.options.cache.acquire({ repoId: repo.repoId, dir: repo.dir, request: parsed });
    if ('bypass' in acquired) return bypass(acquired.bypass);
    const { lease } = acquired;
    const ticket = request.request ? this.tickets.get(request.request) : undefined;
    if (ticket?.take(lease, parsed.progress)) {
      reply(socket, { t: 'splice' });
      socket.end();
      return;
    }
    await streamLease(socket, lease, parsed.progress);
  }
}

/** Forwards the lease's growth, progress and end to a hook that copies the file itself. */
async function streamLease(socket: Socket, lease: PackLease, progress: boolean): Promise<void> {
  let sent = 0;
  const closed = socket.closed
    ? Promise.resolve()
    : new Promise<void>((r) => socket.once('close', () => r()));
  readSentReport(socket, (bytes) => {
    sent = bytes;
  });
  const stopProgress = progress
    ? lease.onProgress((text) => reply(socket, { t: 'progress', text }))
    : () => {};
  try {
    reply(socket, {
      t: 'read',
      path: lease.path,
      role: lease.role,
      bytes: lease.bytes,
      complete: lease.state === 'complete',
    });
    let announced = lease.bytes;
    while (!socket.destroyed) {
      if (lease.state === 'complete') {
        reply(socket, { t: 'done', bytes: lease.bytes });
        break;
      }
      if (lease.state === 'failed') {
        reply(socket, { t: 'error', message: `pack generation failed: ${lease.error}` });
        break;
      }
      if (lease.bytes > announced) {
        announced = lease.bytes;
        reply(socket, { t: 'size', bytes: announced });
      }
      await Promise.race([lease.changed(), closed]);
    }
    // The hook reports what it passed on and closes; its reading pins the file until then.
    await closed;
  } finally {
    stopProgress();
    lease.release(sent);
  }
}

function reply(socket: Socket, message: HookReply): void {
  if (!socket.destroyed && socket.writable) socket.write(`${JSON.stringify(message)}\n`);
}

/** The hook's final `{"t":"sent","bytes":N}` line, if it sends one. */
function readSentReport(socket: Socket, onSent: (bytes: number) => void): void {
  let text = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    text = (text + chunk).slice(-1024);
    const match = /\{"t":"sent","bytes":(\d+)\}\n/.exec(text);
    if (match) onSent(Number(match[1]));
  });
}

/** The request line and exactly `stdinBytes` bytes after it. */
function readRequest(socket: Socket, maxStdin: number): Promise<{ request: HookRequest; stdin: Buffer }> {
  return new Promise((resolve, reject) => {
    let head = Buffer.alloc(0);
    let request: HookRequest | undefined;
    const body: Buffer[] = [];
    let bodyBytes = 0;
    const fail = (message: string) => {
      cleanup();
      reject(new Error(message));
    };
    const onData = (chunk: Buffer) => {
      if (!request) {
        head = Buffer.concat([head, chunk]);
        const newline = head.indexOf(10);
        if (newline < 0) {
          if (head.length > MAX_HEADER_BYTES) fail('request line too long');
          return;
        }
        const parsed = parseHookRequest(head.subarray(0, newline).toString('utf8'));
        if ('invalid' in parsed) return fail(parsed.invalid);
        if (parsed.stdinBytes > maxStdin) return fail(`stdin of ${parsed.stdinBytes} bytes`);
        request = parsed;
        chunk = head.subarray(newline + 1);
      }
      body.push(chunk);
      bodyBytes += chunk.length;
      if (bodyBytes >= request.stdinBytes) {
        cleanup();
        resolve({ request, stdin: Buffer.concat(body).subarray(0, request.stdinBytes) });
      }
    };
    const onEnd = () => fail('connection closed before the request was complete');
    const cleanup = () => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
  });
}

/**
 * `-c` on upload-pack's command line: git honours `uploadpack.packObjectsHook` only from
 * protected configuration (command line, system, global), never from a repository's own.
 */
export function uploadPackHookArgs(): string[] {
  return ['-c', `uploadpack.packObjectsHook=${hookCommand(process.execPath, HOOK_SCRIPT)}`];
}

/**
 * upload-pack runs the hook through the shell with pack-objects' argv appended as `"$@"`;
 * `exec` leaves no shell process between upload-pack and the hook.
 */
export function hookCommand(node: string, script: string): string {
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  return `exec ${quote(node)} ${quote(script)}`;
}
