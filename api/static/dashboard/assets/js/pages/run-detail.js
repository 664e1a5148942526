// One run, live: partition grid (status, offset vs estimate, errors), timeline, fan-in state, the
// density scan it was partitioned from, and the operator's actions (admin, each confirmed first).

import { get, post } from "../api.js";
import { densityChart } from "../chart.js";
import { badge, busy, card, confirmAction, errorNotice, fill, fmt, h, notice, poll, progress, secondsBetween, when } from "../dom.js";
import { ACTIVE, consolidationNote, feedClockReading, throughput } from "../run-figures.js";

export const title = "Run";
const LIVE_MS = 1000;
const IDLE_MS = 10_000;
const RETRYABLE = new Set(["ingesting", "skipped", "failed"]);

// Exact bounds (cents): rounded ones make neighbouring partitions look as if they overlapped.
const priceRange = (p) => `${fmt.money(p.min_price)} – ${p.max_price === null ? "∞" : fmt.money(p.max_price)}`;

function partitionCell(p) {
  const share = p.estimated_records > 0 ? Math.min(1, p.records_seen / p.estimated_records) : p.status === "completed" ? 1 : 0;
  return h(
    "div",
    { class: `cell ${p.status}`, "data-partition": p.partition_id, "data-status": p.status,
      title: `${p.partition_id} ${p.status}\n${priceRange(p)} per ct\noffset ${p.next_offset}, ${p.records_seen} of ~${p.estimated_records} stones${p.error ? `\n${p.error}` : ""}` },
    h("div", { class: "cell-id" }, p.partition_id.replace("partition-", "P")),
    h("div", {}, `${fmt.int(p.records_seen)} / ~${fmt.int(p.estimated_records)}`),
    h("div", { class: "bar" }, h("span", { style: { width: `${share * 100}%` } })),
  );
}

function timeline(run) {
  const steps = [
    ["started", run.started_at],
    ["ingestion completed", run.ingestion_completed_at],
    ["consolidation requested", run.consolidation_requested_at],
    ["consolidation started", run.consolidation_started_at],
    ["consolidation completed", run.consolidation_completed_at],
    [run.status === "completed" ? "completed" : `ended (${run.status})`, run.completed_at],
  ];
  return h(
    "ol",
    { class: "timeline", "data-testid": "timeline" },
    steps.map(([label, at]) =>
      h("li", { class: at ? (label.startsWith("ended") ? "bad" : "done") : "" },
        h("strong", {}, label), " ",
        h("span", { class: "muted" }, when(at), at ? ` (+${fmt.duration(secondsBetween(run.started_at, at))})` : "")),
    ),
  );
}

function fanIn(state) {
  const facts = [
    ["partitions", `${state.completed} completed, ${state.failed} failed, ${state.open} open of ${state.expected}`],
    ["next action", h("strong", { "data-testid": "next-action" }, state.next_action)],
    ["why", state.reason],
    ["last progress", when(state.last_progress_at, { relative: true })],
    ["stall deadline", when(state.stall_deadline)],
  ];
  return h("dl", { class: "facts", "data-testid": "fan-in" }, facts.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

// A lag beyond the safety buffer is a warning (the scheduler logged one); any other reading, or
// none, is a quiet line under the window it concerns.
function feedClock(run) {
  const reading = feedClockReading(run);
  if (reading?.beyond) return h("div", { "data-testid": "feed-clock" }, notice("warn", reading.text));
  return h("p", { class: "small muted", "data-testid": "feed-clock" }, reading ? reading.text : "Feed clock not measured");
}

export function render(root, { params, session }) {
  const runId = params.id;
  const status = h("div");
  const actionsResult = h("div");
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  let lastFetched = null;
  let stop = () => {};

  async function act(button, label, question, call) {
    if (!(await confirmAction(label, question))) return;
    await busy(button, actionsResult, async () => {
      const message = await call();
      actionsResult.replaceChildren(notice("ok", message));
      restart();
    });
  }

  function actions(run) {
    if (!session.admin) return null;
    const retryAll = h("button", { type: "button", "data-testid": "retry-all", disabled: !(RETRYABLE.has(run.status) && (run.failed_partitions > 0 || run.status === "failed")),
      onclick: () => act(retryAll, "Retry failed partitions", "Resume every failed partition from its recorded offset?", async () => {
        const { data } = await post(`/runs/${runId}/retry`, {});
        return `Retrying ${data.retried.join(", ")}`;
      }) }, "Retry failed");
    const force = h("button", { type: "button", "data-testid": "force", disabled: !(["skipped", "failed"].includes(run.status) || (run.status === "ingesting" && run.fan_in.open === 0)),
      onclick: () => act(force, "Force consolidation", "Consolidate what this run fetched? The catalogue gets the partial result and the watermark does not advance.", async () => {
        await post(`/runs/${runId}/consolidate`);
        return "Consolidation forced";
      }) }, "Force consolidation");
    const cancel = h("button", { type: "button", class: "danger", "data-testid": "cancel", disabled: !["planned", "ingesting"].includes(run.status),
      onclick: () => act(cancel, "Cancel run", "Cancel this run? Its remaining pages are not fetched and nothing is consolidated.", async () => {
        await post(`/runs/${runId}/cancel`, { reason: `cancelled from the dashboard by ${session.client}` });
        return "Run cancelled";
      }) }, "Cancel run");
    return h("div", { class: "row" }, retryAll, force, cancel);
  }

  function retryOne(partition) {
    const button = h("button", { type: "button", class: "small", "data-testid": "retry-partition",
      onclick: () => act(button, `Retry ${partition.partition_id}`, `Resume ${partition.partition_id} from offset ${partition.next_offset}?`, async () => {
        const { data } = await post(`/runs/${runId}/retry`, { partition_id: partition.partition_id });
        return `Retrying ${data.retried.join(", ")}`;
      }) }, "Retry");
    return button;
  }

  function partitionsTable(run) {
    const admin = session.admin && RETRYABLE.has(run.status);
    return h("div", { class: "table-wrap" }, h("table", { "data-testid": "partitions" },
      h("thead", {}, h("tr", {}, ["partition", "price per ct", "status", "stones / estimate", "next offset", "pages", "attempts", "error", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, run.partitions.map((p) => h("tr", { "data-partition": p.partition_id, "data-status": p.status },
        h("td", { class: "mono" }, p.partition_id),
        h("td", { class: "nowrap" }, priceRange(p)),
        h("td", {}, badge(p.status)),
        h("td", { class: "num" }, `${fmt.int(p.records_seen)} / ${fmt.int(p.estimated_records)}`),
        h("td", { class: "num" }, fmt.int(p.next_offset)),
        h("td", { class: "num" }, fmt.int(p.pages)),
        h("td", { class: "num" }, p.attempts),
        h("td", { class: "error-text" }, p.error ?? ""),
        h("td", {}, admin && p.status === "failed" ? retryOne(p) : null),
      ))),
    ));
  }

  async function load() {
    const { data: run } = await get(`/runs/${runId}`);
    const now = Date.now();
    const rate = throughput(run, lastFetched, now);
    lastFetched = { records: run.records_fetched, at: now };
    const note = consolidationNote(run);
    status.replaceChildren();
    const banner = ["failed", "skipped", "stalled", "cancelled"].includes(run.state)
      ? notice(run.state === "cancelled" ? "info" : "warn", [h("strong", {}, `Run ${run.state}. `), run.status_reason ?? ""])
      : run.status_reason ? notice("info", run.status_reason) : null;
    fill(
      body,
      h("div", { class: "row spread" },
        h("h1", {}, "Run ", h("span", { class: "mono" }, fmt.shortId(run.run_id)), " ", h("span", { "data-testid": "run-state" }, badge(run.state))),
        actions(run)),
      h("p", { class: "muted" }, `${run.feed} · ${run.run_type} · requested by ${run.requested_by}${run.forced ? " · forced" : ""} · window `,
        when(run.updated_from), " → ", when(run.updated_to)),
      feedClock(run),
      banner,
      actionsResult,
      h("div", { class: "cards" },
        h("div", { class: "card" }, h("div", { class: "label" }, "stones fetched"),
          h("div", { class: "value", "data-testid": "fetched" }, fmt.int(run.records_fetched)), progress(run.records_fetched, run.estimated_records),
          h("div", { class: "progress-label" }, `of ~${fmt.int(run.estimated_records)} estimated`)),
        card("partitions", `${run.completed_partitions}/${run.expected_partitions}${run.failed_partitions ? ` (${run.failed_partitions} failed)` : ""}`, "partition-counts"),
        card("throughput", rate === null ? "–" : `${fmt.int(Math.round(rate))} stones/s`, "throughput"),
        h("div", { class: "card", "data-testid": "consolidated" }, h("div", { class: "label" }, "consolidated"),
          h("div", { class: "value" }, fmt.int(run.consolidation_processed)),
          note ? h("div", { class: "progress-label", "data-testid": "consolidation-note" }, note) : null),
        // Stones the feed sent that could not be mapped: counted by the run, listed under Dead letters & errors.
        card("unmappable stones", h("a", { href: "#/dead-letters" }, fmt.int(run.consolidation_errors)), "unmappable"),
        card("inserted / updated", `${fmt.int(run.diamonds_inserted)} / ${fmt.int(run.diamonds_updated)}`),
        card("unchanged / deleted", `${fmt.int(run.diamonds_unchanged)} / ${fmt.int(run.diamonds_deleted)}`),
      ),
      h("div", { class: "grid" },
        h("section", { class: "panel" }, h("h2", {}, "Fan-in"), fanIn(run.fan_in)),
        h("section", { class: "panel" }, h("h2", {}, "Timeline"), timeline(run)),
      ),
      h("section", { class: "panel" }, h("h2", {}, "Partitions"), h("div", { class: "partition-grid", "data-testid": "partition-grid" }, run.partitions.map(partitionCell))),
      partitionsTable(run),
      run.heatmap ? h("section", { class: "panel", style: { marginTop: "1rem" } }, h("h2", {}, "Density scan and partition boundaries"),
        h("p", { class: "small muted" }, `${fmt.int(run.heatmap.total)} stones counted with ${run.heatmap.count_calls} count calls in ${run.heatmap.duration_s} s`),
        densityChart(run.heatmap)) : null,
    );
    return ACTIVE.has(run.status) ? LIVE_MS : IDLE_MS;
  }

  function restart() {
    stop();
    stop = poll(load, LIVE_MS, (error) => {
      status.replaceChildren(errorNotice(error));
      // No such run, or not a run id: asking again every second cannot change the answer.
      if (error.status === 404 || error.status === 422) {
        body.replaceChildren();
        stop();
      }
    });
  }

  fill(root, h("p", {}, h("a", { href: "#/runs" }, "← Runs")), status, body);
  restart();
  return () => stop();
}
