import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/**
 * `node:http`, loaded with `require` rather than `import`. Node builds a built-in's ES module
 * namespace from all its exports, and reading node:http's `WebSocket`, `CloseEvent` and
 * `MessageEvent` getters loads the whole bundled undici (the HTTP client behind `fetch`): about
 * 11 MiB of resident memory, for good, in a process that never uses it.
 */
export const http: typeof import('node:http') = require('node:http');

/** `node:https` and TLS (about 5 MiB) on first use: only an https upstream needs them. */
export function https(): typeof import('node:https') {
  return require('node:https');
}
