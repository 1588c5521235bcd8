export interface WriterCandidate {
  /** Pod name. */
  name: string;
  createdMs: number;
  /** The mirror is ready on this pod: only a warm replica may publish snapshots. */
  ready: boolean;
  /** The sidecar reports it is the writer now. */
  writing: boolean;
}

/**
 * Picks the one snapshot writer of a mirror among the warm fleet members. Stable: the recorded
 * writer keeps the role while it is warm and present, then whoever already writes, and only
 * then the oldest warm pod (ties by name), so the role moves only when its holder goes away.
 */
export function chooseWriter(
  recorded: string | undefined,
  candidates: WriterCandidate[],
): string | undefined {
  const eligible = candidates.filter((c) => c.ready);
  const keep = eligible.find((c) => c.name === recorded) ?? eligible.find((c) => c.writing);
  if (keep) return keep.name;
  const oldest = [...eligible].sort((a, b) => a.createdMs - b.createdMs || a.name.localeCompare(b.name))[0];
  return oldest?.name;
}
