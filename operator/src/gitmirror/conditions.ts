import type { Condition } from '../api/gitmirror.ts';

export type ConditionInput = Omit<Condition, 'lastTransitionTime'>;

/**
 * Sets a condition the metav1.Condition way: lastTransitionTime moves only when the status
 * flips, so a changing message or reason alone never looks like a transition.
 */
export function setCondition(
  conditions: readonly Condition[] | undefined,
  next: ConditionInput,
  now: string,
) {
  const list = [...(conditions ?? [])];
  const i = list.findIndex((c) => c.type === next.type);
  const previous = i >= 0 ? list[i] : undefined;
  const lastTransitionTime = previous && previous.status === next.status ? previous.lastTransitionTime : now;
  const condition: Condition = { ...next, lastTransitionTime };
  if (i >= 0) list[i] = condition;
  else list.push(condition);
  return list;
}

export function findCondition(
  conditions: readonly Condition[] | undefined,
  type: string,
): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

/** The conditions without one of a type (one that no longer applies). */
export function removeCondition(conditions: readonly Condition[] | undefined, type: string) {
  return conditions?.filter((c) => c.type !== type);
}
