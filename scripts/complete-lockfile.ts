/**
 * The npm registry this project is built against serves @biomejs/biome's native binary only
 * for the platforms of its machines, so `npm install` writes a package-lock.json without
 * biome's other optional platform packages — and `npm ci` then refuses that lock as out of
 * sync. This adds the missing entries (optional and platform-restricted, so npm never
 * downloads them here) from the versions biome itself declares. Run after `npm install`:
 * `npm run complete-lockfile`.
 */
import { readFile, writeFile } from 'node:fs/promises';

interface LockEntry {
  version?: string;
  license?: string;
  engines?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  [key: string]: unknown;
}

const PLATFORM = /^@biomejs\/cli-(android|darwin|linux|win32)-(arm64|x64)(-musl)?$/;

const path = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(await readFile(path, 'utf8')) as { packages: Record<string, LockEntry> };
const biome = lock.packages['node_modules/@biomejs/biome'];
let added = 0;
for (const [name, version] of Object.entries(biome?.optionalDependencies ?? {})) {
  const key = `node_modules/${name}`;
  const match = PLATFORM.exec(name);
  if (lock.packages[key] || !match) continue;
  lock.packages[key] = {
    version,
    cpu: [match[2]],
    dev: true,
    license: biome?.license,
    optional: true,
    os: [match[1]],
    ...(match[3] ? { libc: ['musl'] } : {}),
    engines: biome?.engines,
  };
  added++;
}
const sorted = Object.fromEntries(
  Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a.localeCompare(b))),
);
await writeFile(path, `${JSON.stringify({ ...lock, packages: sorted }, null, 2)}\n`);
console.log(`package-lock.json: added ${added} platform entries`);
