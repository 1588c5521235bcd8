/** Small statistics for the soak's report: percentiles and the trend of a noisy series. */

/** The p-th percentile (0–100) by nearest rank; undefined for no values. */
export function percentile(values: number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

export interface Point {
  t: number;
  v: number;
}

/** Least-squares slope of v over t (per unit of t); 0 for fewer than two distinct times. */
export function slope(points: Point[]): number {
  const n = points.length;
  if (n < 2) return 0;
  const mt = points.reduce((s, p) => s + p.t, 0) / n;
  const mv = points.reduce((s, p) => s + p.v, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.t - mt) * (p.v - mv);
    den += (p.t - mt) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/**
 * The lowest value in each of `windows` equal slices of the series, at the slice's middle.
 * A level that only requests in flight raise (open sockets, buffers between collections)
 * falls back to its floor in every slice; a leak raises the floor itself, so the trend of
 * the floors sees the leak and not the traffic.
 */
export function windowFloors(points: Point[], windows: number): Point[] {
  if (points.length === 0) return [];
  const start = points[0]!.t;
  const span = points.at(-1)!.t - start;
  if (span <= 0) return [points.reduce((a, b) => (b.v < a.v ? b : a))];
  const floors: Point[] = [];
  for (let w = 0; w < windows; w++) {
    const from = start + (w * span) / windows;
    const to = start + ((w + 1) * span) / windows;
    const inside = points.filter((p) => p.t >= from && (w === windows - 1 ? p.t <= to : p.t < to));
    if (inside.length === 0) continue;
    floors.push({ t: (from + to) / 2, v: Math.min(...inside.map((p) => p.v)) });
  }
  return floors;
}

/**
 * The longest fetch a sidecar made, bounded from above by its histogram
 * (`gitmirror_git_operation_duration_seconds{operation="fetch"}`): the smallest bucket that
 * holds every successful fetch; 0 when there was none.
 */
export function fetchUpperBoundMs(metrics: string): number {
  const buckets: { le: number; count: number }[] = [];
  for (const line of metrics.split('\n')) {
    if (!line.startsWith('gitmirror_git_operation_duration_seconds_bucket{')) continue;
    if (!line.includes('operation="fetch"') || !line.includes('outcome="success"')) continue;
    const le = /le="([^"]+)"/.exec(line)?.[1];
    const count = Number(line.trim().split(/\s+/).pop());
    if (le) buckets.push({ le: le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le), count });
  }
  const total = Math.max(0, ...buckets.map((b) => b.count));
  if (total === 0) return 0;
  const bound = Math.min(...buckets.filter((b) => b.count >= total).map((b) => b.le));
  return bound * 1000;
}
