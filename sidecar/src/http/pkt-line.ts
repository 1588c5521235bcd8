import { GitMirrorError } from '../errors/gitmirror-error.ts';

/**
 * What the sidecar needs to know about an upload-pack request before handing it to git:
 * which objects the client wants. Only the head of the body is parsed (wants precede haves
 * in both protocol v0 and v2), so a huge negotiation is never buffered whole.
 */
export interface UploadPackRequestHead {
  /** `want <oid>` object ids. */
  wants: string[];
  /** v2 command (`fetch`, `ls-refs`, ...); undefined for v0. */
  command?: string;
  /** v0/v1 capabilities on the first want line; v2 arguments before the wants (`ofs-delta`, ...). */
  features: string[];
  /** True when parsing reached the end of the wants (a flush, `have`, or `done`). */
  complete: boolean;
  /** Bytes consumed so far. */
  consumed: number;
}

const OID = /^[0-9a-f]{40}([0-9a-f]{24})?$/;

type Packet = { kind: 'flush' } | { kind: 'delim' } | { kind: 'data'; line: string } | { kind: 'partial' };

/** Reads the pkt-line at `offset`: a special packet, a data line, or `partial` if not all bytes are here. */
function readPacket(buf: Buffer, offset: number): { packet: Packet; next: number } {
  if (offset + 4 > buf.length) return { packet: { kind: 'partial' }, next: offset };
  const lengthText = buf.toString('latin1', offset, offset + 4);
  if (!/^[0-9a-f]{4}$/.test(lengthText)) throw new GitMirrorError('BAD_REQUEST', 'malformed pkt-line length');
  const length = Number.parseInt(lengthText, 16);
  // 0000 flush and 0002 response-end both close the section we care about.
  if (length === 0 || length === 2) return { packet: { kind: 'flush' }, next: offset + 4 };
  if (length === 1) return { packet: { kind: 'delim' }, next: offset + 4 };
  if (length < 4 || length > 65520)
    throw new GitMirrorError('BAD_REQUEST', `invalid pkt-line length ${length}`);
  if (offset + length > buf.length) return { packet: { kind: 'partial' }, next: offset };
  const line = buf.toString('utf8', offset + 4, offset + length).replace(/\n$/, '');
  return { packet: { kind: 'data', line }, next: offset + length };
}

function wantOid(line: string): string {
  const end = line.indexOf(' ', 5);
  const oid = line.slice(5, end > 0 ? end : undefined);
  if (!OID.test(oid)) throw new GitMirrorError('BAD_REQUEST', 'want line with an invalid object id');
  return oid;
}

/**
 * Incremental parser: feed it the buffered head so far; it reports whether it has seen
 * enough. Malformed pkt-lines raise BAD_REQUEST: git itself would reject them anyway, and
 * failing early keeps garbage from reaching a child process.
 */
export function parseUploadPackHead(buf: Buffer): UploadPackRequestHead {
  const head: UploadPackRequestHead = { wants: [], features: [], complete: false, consumed: 0 };
  let offset = 0;
  let inArguments = false;
  while (!head.complete) {
    const { packet, next } = readPacket(buf, offset);
    if (packet.kind === 'partial') break;
    offset = next;
    if (packet.kind === 'flush') head.complete = true;
    else if (packet.kind === 'delim') inArguments = true;
    else if (!inArguments && packet.line.startsWith('command='))
      head.command = packet.line.slice('command='.length);
    else if (packet.line.startsWith('want ')) {
      if (head.wants.length === 0 && !inArguments) head.features.push(...packet.line.split(' ').slice(2));
      head.wants.push(wantOid(packet.line));
    } else if (packet.line.startsWith('have ') || packet.line === 'done') head.complete = true;
    else if (inArguments) head.features.push(packet.line);
  }
  head.consumed = offset;
  return head;
}

/**
 * Whether the client reads the pack from side-band-64k packets, which is what lets the
 * sidecar write it into the response itself: every v2 fetch (unless it asked for
 * sideband-all, which we never advertise), and v0/v1 clients asking for side-band-64k (git
 * has since 1.6.4). Others are served by upload-pack without the cache.
 */
export function readsSidebandPacks(head: UploadPackRequestHead, protocol: string | undefined): boolean {
  if (protocol?.split(':').includes('version=2'))
    return head.command === 'fetch' && !head.features.includes('sideband-all');
  return head.features.includes('side-band-64k');
}

/** Encodes one pkt-line (used for the v0 `# service=` banner). */
export function pktLine(text: string): string {
  return (text.length + 4).toString(16).padStart(4, '0') + text;
}
