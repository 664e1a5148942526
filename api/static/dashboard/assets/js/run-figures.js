// Figures derived from a run summary, shared by the runs table and the run page.

import { secondsBetween } from "./dom.js";

export const ACTIVE = new Set(["planned", "ingesting", "consolidating"]);

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
