/** MQTT topic filters (`+` one level, `#` the rest) and shared subscriptions. */

export function matchesTopicFilter(filter: string, topic: string): boolean {
  // Topics starting with `$` are never matched by filters starting with a wildcard (MQTT 5 §4.7.2).
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/** `$share/{group}/{filter}`: the broker hands each message to one member of the group. */
export const sharedSubscription = (group: string, filter: string) => `$share/${group}/${filter}`;

/** The first of `filters` that matches `topic` (the subscription a message came through). */
export const matchingFilter = (filters: readonly string[], topic: string) =>
  filters.find((filter) => matchesTopicFilter(filter, topic));
