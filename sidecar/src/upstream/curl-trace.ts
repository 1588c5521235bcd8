import { THROTTLE_HEADERS, type UpstreamAnswer } from './throttle.ts';

/** Longest trace line kept; a header line longer than this is not one we read. */
const MAX_LINE = 16 * 1024;
const RECV_HEADER = '<= Recv header: ';
const SEND_HEADER = '=> Send header';
const STATUS_LINE = /^HTTP\/[\d.]+ (\d{3})(?:\s|$)/;
const HEADER_LINE = /^([A-Za-z0-9-]+):\s*(.*?)\s*$/;

/**
 * Reads what git's HTTP transport received, from `GIT_TRACE_CURL` with `GIT_TRACE_CURL_NO_DATA`
 * (headers only, credentials redacted by git), so a failed fetch, clone or ls-remote says which
 * status upstream answered and how long it asked us to wait: git's own message says only
 * "The requested URL returned error: 429". It keeps the status of the last response and the
 * few headers that matter for throttling, nothing else: the trace is read from a pipe and
 * dropped line by line, never stored.
 */
export class CurlTraceReader {
  private partial = '';
  private last?: UpstreamAnswer;
  private skipping = false;
  private onFirstRequest?: () => void;

  /** `onFirstRequest` is called once, when git sends the headers of its first request. */
  constructor(options: { onFirstRequest?: () => void } = {}) {
    this.onFirstRequest = options.onFirstRequest;
  }

  feed(chunk: Buffer | string): void {
    const text = this.partial + chunk.toString();
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!this.skipping) this.read(line);
      this.skipping = false;
    }
    if (this.partial.length > MAX_LINE) {
      this.partial = '';
      this.skipping = true;
    }
  }

  /** The last response git received (status and throttling headers), if any. */
  lastResponse(): UpstreamAnswer | undefined {
    return this.last;
  }

  private read(line: string): void {
    if (this.onFirstRequest && line.includes(SEND_HEADER)) {
      const notify = this.onFirstRequest;
      this.onFirstRequest = undefined;
      notify();
    }
    const at = line.indexOf(RECV_HEADER);
    if (at < 0) return;
    const value = line.slice(at + RECV_HEADER.length).replace(/\r$/, '');
    const status = STATUS_LINE.exec(value);
    if (status) {
      this.last = { status: Number(status[1]), headers: {} };
      return;
    }
    const header = HEADER_LINE.exec(value);
    if (!header || !this.last) return;
    const name = header[1]!.toLowerCase();
    if (THROTTLE_HEADERS.has(name)) this.last.headers[name] = header[2];
  }
}
