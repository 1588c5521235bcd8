import { Readable } from 'node:stream';
import { GitMirrorError } from '../errors/gitmirror-error.ts';

/**
 * Reads the first bytes of a stream until `enough(head)` says so (or `maxBytes`), and
 * returns them with a stream that replays them followed by the rest. Lets the server look
 * at a request's head without buffering the whole body.
 */
export async function peekHead(
  source: Readable,
  enough: (head: Buffer) => boolean,
  maxBytes: number,
  onOverflow: 'throw' | 'stop' = 'throw',
): Promise<{ head: Buffer; replay: Readable; ended: boolean }> {
  const iterator = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const chunks: Buffer[] = [];
  let size = 0;
  let ended = false;
  while (true) {
    const next = await iterator.next();
    if (next.done) {
      ended = true;
      break;
    }
    chunks.push(next.value);
    size += next.value.length;
    const head = Buffer.concat(chunks);
    if (enough(head)) break;
    if (size > maxBytes) {
      if (onOverflow === 'stop') break;
      throw new GitMirrorError('PAYLOAD_TOO_LARGE', `request head exceeds ${maxBytes} bytes`);
    }
  }
  const head = Buffer.concat(chunks);
  async function* replay() {
    yield head;
    if (ended) return;
    while (true) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value;
    }
  }
  return { head, replay: Readable.from(replay(), { objectMode: false }), ended };
}
