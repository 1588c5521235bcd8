import { request } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import type { Container, Handler, Probe } from './pod-types.ts';

/**
 * Probes as the kubelet runs them: from the node (here the host side of the pod network)
 * against the pod IP, with the probe's period, timeout and thresholds. An httpGet succeeds on
 * any status from 200 to 399; a tcpSocket on an accepted connection. `exec` runs inside the
 * container through the caller's `exec`.
 */

export type ProbeKind = 'startup' | 'readiness' | 'liveness';

export interface ProbeTarget {
  podIp: string;
  container: Container;
  exec(command: string[], timeoutMs: number): Promise<number>;
}

export function resolvePort(container: Container, port: number | string): number {
  if (typeof port === 'number') return port;
  if (/^\d+$/.test(port)) return Number(port);
  const named = container.ports?.find((p) => p.name === port);
  if (!named) throw new Error(`container ${container.name} has no port named ${port}`);
  return named.containerPort;
}

/** Runs one handler once; true when it succeeded within `timeoutMs`. */
export async function runHandler(handler: Handler, target: ProbeTarget, timeoutMs: number): Promise<boolean> {
  try {
    if (handler.httpGet) {
      const get = handler.httpGet;
      const port = resolvePort(target.container, get.port);
      const url = `${get.scheme === 'HTTPS' ? 'https' : 'http'}://${get.host ?? target.podIp}:${port}${get.path ?? '/'}`;
      return await httpGet(url, get.httpHeaders ?? [], timeoutMs);
    }
    if (handler.tcpSocket) {
      const port = resolvePort(target.container, handler.tcpSocket.port);
      return await tcpConnect(handler.tcpSocket.host ?? target.podIp, port, timeoutMs);
    }
    if (handler.exec) return (await target.exec(handler.exec.command, timeoutMs)) === 0;
    if (handler.sleep) {
      await new Promise((resolve) => setTimeout(resolve, handler.sleep!.seconds * 1000));
      return true;
    }
  } catch {
    return false;
  }
  return false;
}

function httpGet(
  url: string,
  headers: { name: string; value: string }[],
  timeoutMs: number,
): Promise<boolean> {
  const send = url.startsWith('https:') ? httpsRequest : request;
  return new Promise((resolve) => {
    const req = send(
      url,
      {
        method: 'GET',
        timeout: timeoutMs,
        rejectUnauthorized: false,
        headers: {
          'user-agent': 'kube-probe/1.35',
          ...Object.fromEntries(headers.map((h) => [h.name, h.value])),
        },
      },
      (res) => {
        res.resume();
        const status = res.statusCode ?? 0;
        resolve(status >= 200 && status < 400);
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

function tcpConnect(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: timeoutMs });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}

export interface ProbeState {
  /** The probe's verdict so far: readiness starts false, liveness and startup start "not failed". */
  result: boolean;
  successes: number;
  failures: number;
}

/**
 * Counts one probe outcome; returns the new verdict when it flips. Startup and liveness need
 * one success, readiness `successThreshold`; all need `failureThreshold` failures in a row.
 * A startup probe reports its first verdict either way (it then stops).
 */
export function record(kind: ProbeKind, probe: Probe, state: ProbeState, ok: boolean): boolean | undefined {
  if (ok) {
    state.failures = 0;
    state.successes++;
    const threshold = kind === 'readiness' ? (probe.successThreshold ?? 1) : 1;
    if (state.successes < threshold || (state.result && kind !== 'startup')) return undefined;
  } else {
    state.successes = 0;
    state.failures++;
    if (state.failures < (probe.failureThreshold ?? 3) || (!state.result && kind !== 'startup'))
      return undefined;
  }
  state.result = ok;
  return ok;
}

/**
 * One probe loop: waits `initialDelaySeconds`, then probes every `periodSeconds` and calls
 * `onChange` when the thresholded result flips. Stops when `signal` aborts, and a startup
 * probe stops after its verdict.
 */
export function runProbeLoop(
  kind: ProbeKind,
  probe: Probe,
  target: ProbeTarget,
  onChange: (result: boolean) => void,
  signal: AbortSignal,
): void {
  const periodMs = (probe.periodSeconds ?? 10) * 1000;
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
  const state: ProbeState = { result: kind !== 'readiness', successes: 0, failures: 0 };
  let timer: NodeJS.Timeout | undefined;
  signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
  const tick = async () => {
    if (signal.aborted) return;
    const ok = await runHandler(probe, target, timeoutMs);
    if (signal.aborted) return;
    const flipped = record(kind, probe, state, ok);
    if (flipped !== undefined) onChange(flipped);
    if (flipped !== undefined && kind === 'startup') return;
    timer = setTimeout(() => void tick(), periodMs);
  };
  timer = setTimeout(() => void tick(), (probe.initialDelaySeconds ?? 0) * 1000);
}
