/** Per-repository memory kept by the sidecar; a flood of distinct repository names costs at most this many entries. */
export const REMEMBERED = 10_000;

/** Sets `key` as the newest entry, forgetting the oldest beyond REMEMBERED. */
export function remember<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > REMEMBERED) map.delete(map.keys().next().value as string);
}
