import { SOURCE_DAYS, watermarkOf } from './minute-aggregation';

/**
 * The cursor of MinuteAggregator over the mark log, apart from its queries: where a pass reads, and
 * where the cursor stands after each page. Pure; the aggregator reads the clock and the stored cursor,
 * and stores what these say.
 */

export type PassPlan =
  /** Nothing settled past the cursor yet. */
  | { kind: 'idle' }
  | {
      kind: 'read';
      /** Marks in [cursor, until) are read; minutes starting at or before `watermark` are due. */
      until: number;
      watermark: number;
      /** Minutes before this are recomputed from telemetry_raw, later ones from telemetry_1m_source. */
      recentFrom: number;
      /** Replicas lagging more than this are not read. */
      maxReplicaDelaySeconds: number;
    };

/** A pass at the server's clock `now` (seconds), from the stored `cursor`. */
export function planPass(facts: {
  now: number;
  cursor: number;
  latenessMs: number;
  requestTimeoutMs: number;
}): PassPlan {
  const { now, cursor } = facts;
  const settleSeconds = Math.ceil(facts.requestTimeoutMs / 1000) + 1;
  // A mark whose insert was acknowledged committed within the request timeout of its `marked_at`
  // (the server's clock when it began): before `now − settle`, every such mark is visible, and so
  // are its raw rows, inserted before it. Later marks wait for the next pass. On a cluster, replicas
  // that lag more than that (one catching up after an outage) are not read: a minute recomputed from
  // one would lack rows, and the cursor would move past its marks.
  const until = now - settleSeconds;
  if (until <= cursor) return { kind: 'idle' };
  return {
    kind: 'read',
    until,
    watermark: watermarkOf(now, Math.ceil(facts.latenessMs / 1000)),
    recentFrom: now - SOURCE_DAYS * 86_400,
    maxReplicaDelaySeconds: settleSeconds,
  };
}

export interface CursorState {
  cursor: number;
  /** The earliest first mark of a minute not due yet, over the pages read so far. */
  held: number;
}

export const cursorAt = (cursor: number): CursorState => ({ cursor, held: Number.POSITIVE_INFINITY });

/**
 * After the due minutes of the page ending at `end` were recomputed: the cursor moves past the page,
 * but never past the first mark of a minute not due yet (on this page or an earlier one), so those
 * marks are read again. It is stored only when it moved over marks: a minute not due holds it for up
 * to a minute, and an empty log needs no progress (a part per pass in a one-row table otherwise).
 */
export function advanceCursor(
  state: CursorState,
  page: { end: number; heldFrom: number; marks: number },
): { state: CursorState; store: boolean } {
  const held = Math.min(state.held, page.heldFrom);
  const cursor = Math.min(page.end, held);
  return { state: { cursor, held }, store: cursor !== state.cursor && page.marks > 0 };
}
