import { ServerResponse } from 'node:http';
import type { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { runProcess, spawnProcess } from '../process/child-process.ts';

const SCRIPT = fileURLToPath(new URL('./send-pack-file.pl', import.meta.url));
const PROBE_TIMEOUT_MS = 10_000;

/** Where a helper may write a response's body itself: the socket's descriptor. */
export interface RawResponse {
  fd: number;
}

export interface FileSendOptions {
  path: string;
  /** Pack bytes to skip (sent already). */
  offset: number;
  /** Pack bytes to send from `offset`. */
  length: number;
  target: RawResponse;
  timeoutMs: number;
}

/**
 * Sends part of a completed cache file into a response without a copy through the
 * sidecar: `send-pack-file.pl` frames it into side-band-64k packets with sendfile(2). On a
 * hit, reading the file into the heap and writing it to the socket is most of what the
 * sidecar spends (bench: two thirds of a hit's CPU, half of it the read); this leaves the
 * socket's share. Resolves with the response bytes written.
 */
export class FileSender {
  private readonly sysSendfile: number;

  private constructor(sysSendfile: number) {
    this.sysSendfile = sysSendfile;
  }

  /**
   * A sender, if `perl` runs here and knows sendfile's syscall number (from the system's
   * headers, so any architecture); undefined otherwise, and completed packs are copied
   * through the sidecar as before.
   */
  static async find(): Promise<FileSender | undefined> {
    try {
      const { stdout } = await runProcess('perl', ['-e', 'require "syscall.ph"; print &SYS_sendfile'], {
        timeoutMs: PROBE_TIMEOUT_MS,
        env: { PATH: process.env.PATH },
      });
      const number = Number(stdout.trim());
      return Number.isInteger(number) && number > 0 ? new FileSender(number) : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Frames `length` bytes as band-1 packets in one HTTP chunk; resolves with the packets'
   * bytes once every byte went out, rejects otherwise.
   */
  async send(options: FileSendOptions): Promise<number> {
    const proc = spawnProcess(
      'perl',
      [SCRIPT, options.path, String(options.offset), String(options.length), String(this.sysSendfile)],
      { timeoutMs: options.timeoutMs, stdoutFd: options.target.fd, env: { PATH: process.env.PATH } },
    );
    proc.stdin.end();
    await proc.done;
    return options.length + 5 * Math.ceil(options.length / 65515);
  }
}

/**
 * The socket under an HTTP/1.1 response whose body is chunked, when a helper may write a
 * chunk into it directly: plain TCP (never TLS, whose bytes only the sidecar can encrypt),
 * and nothing left in the sidecar's buffers (the caller awaited its last write).
 */
export function rawResponse(out: Writable): RawResponse | undefined {
  if (!(out instanceof ServerResponse) || !out.headersSent || out.writableLength > 0) return undefined;
  // Set by node:http once the headers are out: the body is in chunked encoding.
  if ((out as { chunkedEncoding?: boolean }).chunkedEncoding !== true) return undefined;
  const socket = out.socket;
  if (!socket || 'encrypted' in socket || socket.writableLength > 0) return undefined;
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? { fd } : undefined;
}
