// @ts-check
/**
 * The sidecar's `uploadpack.packObjectsHook`. upload-pack runs it once per fetch, inside the
 * repository, with `git [--shallow-file ""] pack-objects ...` as arguments and
 * pack-objects' input on stdin, and relays its stdout (the pack) and stderr (progress) to
 * the client, with keepalives while it is silent. It asks the sidecar's pack cache over
 * the Unix socket in GITMIRROR_PACK_CACHE_SOCKET and then either copies the cached pack to
 * stdout as it grows, exits without output (the sidecar writes the pack into the response
 * itself), or runs pack-objects as upload-pack would have (cache off, full, or unreachable).
 *
 * Plain JavaScript with two built-in imports, because it starts once per fetch: Node loads
 * it in ~50 ms of CPU, where a TypeScript file would first load the type stripper.
 * The message shapes are `hook-protocol.ts`'s.
 *
 * It exits 0 only after writing exactly the bytes of a pack whose generation completed;
 * on any failure it exits 1, and upload-pack then fails the fetch (band 3 "aborting"), so a
 * client never takes a partial pack for a whole one.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { connect } from 'node:net';

const MAX_STDIN = 32 * 1024 * 1024;
const CHUNK = 1024 * 1024;
const args = process.argv.slice(2);

main().then(
  (code) => process.exit(code),
  (err) => {
    say(`gitmirror: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);

/** @returns {Promise<number>} */
async function main() {
  const stdin = readAll(0);
  const socketPath = process.env.GITMIRROR_PACK_CACHE_SOCKET;
  if (!socketPath || args[0] !== 'git' || stdin.length > MAX_STDIN) return runPackObjects(stdin);
  const socket = await open(socketPath).catch(() => undefined);
  if (!socket) return runPackObjects(stdin);
  const replies = lines(socket);
  const header = { v: 1, dir: process.cwd(), args, stdinBytes: stdin.length, request: requestId() };
  socket.write(`${JSON.stringify(header)}\n`);
  socket.write(stdin);
  const first = await replies.next();
  if (first.t === 'bypass') {
    socket.destroy();
    return runPackObjects(stdin);
  }
  if (first.t === 'splice') {
    socket.destroy();
    return 0;
  }
  if (first.t !== 'read') throw new Error(`unexpected reply from the pack cache: ${first.t}`);
  const progress = args.includes('--progress');
  if (progress && first.role === 'joined') say('gitmirror: joined a pack generation already under way');
  if (progress && first.role === 'hit') say('gitmirror: pack served from the cache');
  const sent = await copyPack(first, replies, progress);
  await new Promise((resolve) =>
    socket.end(`${JSON.stringify({ t: 'sent', bytes: sent })}\n`, 'utf8', () => resolve(undefined)),
  );
  return 0;
}

/**
 * Copies the file to stdout while it grows, until the sidecar says it is whole.
 * @param {{ path: string, bytes: number, complete: boolean }} first
 * @param {{ next(): Promise<any> }} replies
 * @param {boolean} progress
 */
async function copyPack(first, replies, progress) {
  const fd = openSync(first.path, 'r');
  const buffer = Buffer.allocUnsafe(CHUNK);
  let position = 0;
  let total = first.complete ? first.bytes : undefined;
  try {
    for (;;) {
      const read = readSync(fd, buffer, 0, CHUNK, position);
      if (read > 0) {
        writeAll(1, buffer, read);
        position += read;
        if (total !== undefined && position > total)
          throw new Error('the cached pack is longer than announced');
        continue;
      }
      if (total !== undefined) {
        if (position !== total) throw new Error(`the cached pack ended after ${position} of ${total} bytes`);
        return position;
      }
      const message = await replies.next();
      if (message.t === 'done') total = message.bytes;
      else if (message.t === 'progress' && progress) writeAll(2, Buffer.from(message.text), -1);
      else if (message.t === 'error') throw new Error(message.message);
    }
  } finally {
    closeSync(fd);
  }
}

/** pack-objects as upload-pack would have run it, fed the stdin already read. */
/** @param {Buffer} stdin @returns {Promise<number>} */
function runPackObjects(stdin) {
  return new Promise((resolve) => {
    const child = spawn(args[0] ?? 'git', args.slice(1), { stdio: ['pipe', 'inherit', 'inherit'] });
    child.stdin.on('error', () => {});
    child.stdin.end(stdin);
    child.on('error', (err) => {
      say(`gitmirror: could not run pack-objects: ${err.message}`);
      resolve(1);
    });
    child.on('exit', (code) => resolve(code ?? 1));
  });
}

/** @param {string} path @returns {Promise<import('node:net').Socket>} */
function open(path) {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

/**
 * One JSON reply per line; a closed connection before the pack is whole is an error (the
 * sidecar stopped), never an end.
 * @param {import('node:net').Socket} socket
 */
function lines(socket) {
  /** @type {any[]} */
  const queue = [];
  /** @type {((value: any) => void) | undefined} */
  let wake;
  let ended = false;
  let text = '';
  socket.setEncoding('utf8');
  socket.on('data', (/** @type {string} */ chunk) => {
    text += chunk;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n')) {
      queue.push(JSON.parse(text.slice(0, nl)));
      text = text.slice(nl + 1);
    }
    wake?.(undefined);
  });
  const end = () => {
    ended = true;
    wake?.(undefined);
  };
  socket.on('close', end);
  socket.on('error', end);
  return {
    async next() {
      while (queue.length === 0) {
        if (ended) throw new Error('the pack cache went away before the pack was complete');
        await new Promise((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
      return queue.shift();
    },
  };
}

/** @param {number} fd @returns {Buffer} */
function readAll(fd) {
  const chunks = [];
  const buffer = Buffer.allocUnsafe(64 * 1024);
  for (;;) {
    const read = readRetrying(fd, buffer);
    if (read === 0) return Buffer.concat(chunks);
    chunks.push(Buffer.from(buffer.subarray(0, read)));
  }
}

/** @param {number} fd @param {Buffer} buffer */
function readRetrying(fd, buffer) {
  for (;;) {
    try {
      return readSync(fd, buffer, 0, buffer.length, null);
    } catch (err) {
      if (/** @type {NodeJS.ErrnoException} */ (err).code !== 'EAGAIN') throw err;
      pause();
    }
  }
}

/**
 * Blocking writes: the hook does nothing else while upload-pack drains the pipe.
 * @param {number} fd @param {Buffer} buffer @param {number} length -1 for all of it
 */
function writeAll(fd, buffer, length) {
  let offset = 0;
  const end = length < 0 ? buffer.length : length;
  while (offset < end) {
    try {
      offset += writeSync(fd, buffer, offset, end - offset);
    } catch (err) {
      if (/** @type {NodeJS.ErrnoException} */ (err).code !== 'EAGAIN') throw err;
      pause();
    }
  }
}

function pause() {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2);
}

/** @param {string} line */
function say(line) {
  try {
    writeAll(2, Buffer.from(`${line}\n`), -1);
  } catch {
    // stderr gone: upload-pack is gone too
  }
}

function requestId() {
  const id = process.env.GITMIRROR_PACK_CACHE_REQUEST;
  return id && /^[A-Za-z0-9_-]{1,64}$/.test(id) ? id : undefined;
}
