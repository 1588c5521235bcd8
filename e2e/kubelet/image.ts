import { readFileSync } from 'node:fs';

/**
 * What the test kubelet knows of the gitmirror image without building it: the final stage of
 * the repository's Dockerfile (WORKDIR, ENV, USER, ENTRYPOINT, CMD). Its filesystem is
 * stood in for by the checkout (mounted at WORKDIR), the host's /usr, /etc and /lib, and the
 * project's Node 24 binary at /usr/local/bin/node where the node:24 base image keeps it.
 */

export interface ImageConfig {
  workdir: string;
  env: Record<string, string>;
  user?: { uid: number; gid: number };
  entrypoint: string[];
  cmd: string[];
}

/** The node:24-slim base image's PATH, which the Dockerfile inherits. */
const BASE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export function parseDockerfile(path: string): ImageConfig {
  const lines = joinContinuations(readFileSync(path, 'utf8'));
  const lastFrom = lines.findLastIndex((line) => /^FROM\s/i.test(line));
  const config: ImageConfig = { workdir: '/', env: { PATH: BASE_PATH }, entrypoint: [], cmd: [] };
  for (const line of lines.slice(lastFrom + 1)) {
    const match = /^(\w+)\s+(.*)$/s.exec(line);
    if (!match) continue;
    const [, instruction, rest] = match as unknown as [string, string, string];
    switch (instruction.toUpperCase()) {
      case 'WORKDIR':
        config.workdir = rest.trim();
        break;
      case 'ENV':
        Object.assign(config.env, parseEnv(rest));
        break;
      case 'USER': {
        const [uid, gid] = rest.trim().split(':');
        if (!/^\d+$/.test(uid ?? '')) throw new Error(`USER ${rest}: only numeric users are supported`);
        config.user = { uid: Number(uid), gid: Number(gid ?? uid) };
        break;
      }
      case 'ENTRYPOINT':
        config.entrypoint = execForm(rest);
        break;
      case 'CMD':
        config.cmd = execForm(rest);
        break;
    }
  }
  return config;
}

function joinContinuations(text: string): string[] {
  return text
    .split('\n')
    .filter((line) => !/^\s*#/.test(line))
    .join('\n')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
}

function parseEnv(rest: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const match of rest.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
    const raw = match[2]!;
    env[match[1]!] = raw.startsWith('"') ? (JSON.parse(raw) as string) : raw;
  }
  return env;
}

function execForm(rest: string): string[] {
  const trimmed = rest.trim();
  if (!trimmed.startsWith('[')) return ['/bin/sh', '-c', trimmed];
  return JSON.parse(trimmed) as string[];
}

/** The kubelet's rule: `command` replaces ENTRYPOINT, `args` replaces CMD (and drops it when only `command` is set). */
export function commandLine(image: ImageConfig, command?: string[], args?: string[]): string[] {
  if (command && command.length > 0) return [...command, ...(args ?? [])];
  return [...image.entrypoint, ...(args ?? image.cmd)];
}
