import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Looking for a canary secret wherever it must not be: the forms it could leak in, a scan of
 * bytes, files and directory trees for them, and a sampler of every process's argv.
 */

export interface Needle {
  /** Which form this is, for the report: `raw`, `url-encoded`, `base64(user:password)`, ... */
  form: string;
  bytes: Buffer;
}

/**
 * Every form the secret could leak in: as is, URL-encoded (as in `https://user:pw@host`), and
 * base64 and base64url both of the password alone and of `user:password` (an Authorization
 * header). Base64 text depends on where the secret starts within the encoded bytes, so each
 * is searched at all three alignments, trimmed to the characters that only the secret decides.
 */
export function canaryNeedles(user: string, password: string): Needle[] {
  const needles: Needle[] = [
    { form: 'raw', bytes: Buffer.from(password) },
    { form: 'url-encoded', bytes: Buffer.from(encodeURIComponent(password)) },
  ];
  for (const [label, secret] of [
    ['password', Buffer.from(password)],
    ['user:password', Buffer.from(`${user}:${password}`)],
  ] as const) {
    for (const encoding of ['base64', 'base64url'] as const) {
      for (const offset of [0, 1, 2]) {
        const text = Buffer.concat([Buffer.alloc(offset), secret])
          .toString(encoding)
          .replace(/=+$/, '');
        const start = Math.ceil((offset * 4) / 3);
        const end = Math.floor(((offset + secret.length) * 8) / 6);
        needles.push({
          form: `${encoding}(${label}) at offset ${offset}`,
          bytes: Buffer.from(text.slice(start, end)),
        });
      }
    }
  }
  // base64 and base64url agree on secrets without `+` or `/` in their encoding.
  return needles.filter((n, i) => needles.findIndex((m) => m.bytes.equals(n.bytes)) === i);
}

/** The forms of the secret found in `haystack`. */
export function findCanary(haystack: Buffer | string, needles: Needle[]): string[] {
  const bytes = typeof haystack === 'string' ? Buffer.from(haystack) : haystack;
  return needles.filter((n) => bytes.includes(n.bytes)).map((n) => n.form);
}

/** `text` with every form of the secret replaced, so a failure report does not print it. */
export function redact(text: string, needles: Needle[]): string {
  let out = text;
  for (const n of needles) out = out.replaceAll(n.bytes.toString(), `<canary ${n.form}>`);
  return out;
}

export interface Hit {
  /** A file path, URL, command or other description of where. */
  where: string;
  forms: string[];
}

/** Every regular file under `dir` (recursively, symlinks not followed) holding a form of the secret. */
export async function scanTree(dir: string, needles: Needle[]): Promise<{ files: number; hits: Hit[] }> {
  const hits: Hit[] = [];
  let files = 0;
  for (const entry of await listTree(dir)) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    // A file can vanish between listing and reading (a fetch's temp file, a log rotated).
    const content = await readFile(path).catch(() => undefined);
    if (content === undefined) continue;
    files++;
    const forms = findCanary(content, needles);
    if (forms.length > 0) hits.push({ where: path, forms });
  }
  return { files, hits };
}

/**
 * Every entry under `dir`. The kubelet swaps a secret volume's timestamped dir atomically while
 * pods run, so a dir listed a moment ago can be gone: the listing is taken again then.
 */
async function listTree(dir: string) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await readdir(dir, { recursive: true, withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt === 5) throw err;
    }
  }
}

export interface ArgvReport {
  samples: number;
  /** Distinct command lines seen (NUL-separated argv joined with spaces). */
  commandLines: Set<string>;
  hits: Hit[];
}

/**
 * Reads /proc/<pid>/cmdline of every process on the machine (pods' processes included: their
 * PID namespaces are children of ours) every `intervalMs` until `stop()`, and reports each
 * command line that holds a form of the secret. argv only: a process's environment is where
 * the design puts the secret, for the one git process that needs it.
 */
export function sampleArgv(needles: Needle[], intervalMs = 25): { stop(): Promise<ArgvReport> } {
  const report: ArgvReport = { samples: 0, commandLines: new Set(), hits: [] };
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      for (const pid of await readdir('/proc').catch(() => [] as string[])) {
        if (!/^\d+$/.test(pid)) continue;
        const argv = await readFile(`/proc/${pid}/cmdline`).catch(() => undefined);
        if (!argv || argv.length === 0) continue;
        const line = argv.toString().replaceAll('\0', ' ').trim();
        if (report.commandLines.has(line)) continue;
        report.commandLines.add(line);
        const forms = findCanary(argv, needles);
        if (forms.length > 0) {
          report.hits.push({ where: `pid ${pid}: ${redact(line, needles).slice(0, 300)}`, forms });
        }
      }
      report.samples++;
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return report;
    },
  };
}
