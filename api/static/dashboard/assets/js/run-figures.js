// Figures derived from a run summary, shared by the runs table and the run page.

import { fmt, secondsBetween } from "./dom.js";

export const ACTIVE = new Set(["planned", "ingesting", "consolidating"]);
/** What GET /runs?status= accepts: the lifecycle states, "stalled" and "active". */
export const STATE_FILTERS = ["active", "planned", "ingesting", "consolidating", "completed", "skipped", "failed", "cancelled", "stalled"];
/** The run type choice; empty lets the API choose from the watermark, as a scheduled run does. */
export const RUN_TYPES = [["", "from the watermark"], ["full", "full"], ["incremental", "incremental"]];

/**
 * Stones fetched per second: between two readings while the run fetches (`previous` =
 * {records, at}), else the run's average over its fetching time.
 */
export function throughput(run, previous, now) {
  if (run.status === "ingesting" && previous && now > previous.at) {
    return ((run.records_fetched - previous.records) * 1000) / (now - previous.at);
  }
  const end = run.ingestion_completed_at ?? (ACTIVE.has(run.status) ? null : run.completed_at);
  const seconds = secondsBetween(run.started_at, end);
  return seconds > 0 && run.records_fetched ? run.records_fetched / seconds : null;
}

/** When the run stopped changing, or null while it is active. */
export const finishedAt = (run) =>
  ACTIVE.has(run.state) ? null : run.completed_at ?? run.consolidation_completed_at ?? run.last_progress_at;

/**
 * Why the run consolidated fewer stones than it fetched, or null when it did not: only stones whose
 * payload changed since they were last fetched are queued for consolidation (by design; the others
 * are in the catalogue as they are), so a run over unchanged stones rightly consolidates none.
 */
export function consolidationNote(run) {
  const unchanged = Math.max(0, run.records_fetched - run.records_changed);
  if (unchanged === 0) return null;
  const seen = `${fmt.int(run.records_fetched)} stones seen`;
  if (run.records_changed === 0) return `${seen}, unchanged since they were last fetched: nothing to consolidate`;
  return `${seen}, ${fmt.int(unchanged)} unchanged since they were last fetched: only the ${fmt.int(run.records_changed)} changed are consolidated`;
}

/**
 * The feed's clock as the run measured it when planned (its `Date` header against our clock), or
 * null when unmeasured (older runs, a feed sending no Date header): {text, beyond}, `beyond` when
 * the lag exceeded the incremental safety buffer (the buffer alone would let a window miss stones).
 */
export function feedClockReading(run) {
  const clock = run.feed_clock;
  if (!clock) return null;
  const offset = clock.lag_s >= 0 ? `${fmt.duration(clock.lag_s)} behind ours` : `${fmt.duration(-clock.lag_s)} ahead of ours`;
  const buffer = clock.safety_buffer_s === null ? "" : ` of ${fmt.duration(clock.safety_buffer_s)}`;
  const beyond = clock.beyond_safety_buffer ? `, more than the incremental safety buffer${buffer}` : "";
  const window = clock.added_to_window ? "added to this incremental window" : "not added to the window";
  return { text: `Feed clock ${offset}${beyond}: ${window}`, beyond: clock.beyond_safety_buffer };
}
