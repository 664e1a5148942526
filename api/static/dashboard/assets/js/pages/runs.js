// Runs: a live table (status, progress, throughput) with filters, and starting a run (admin).

import { FEEDS, get, post } from "../api.js";
import { badge, busy, choice, errorNotice, fill, fmt, h, notice, poll, progress, secondsBetween, when } from "../dom.js";
import { replaceQuery } from "../router.js";
import { ACTIVE, RUN_TYPES, STATE_FILTERS, feedClockReading, finishedAt, throughput } from "../run-figures.js";

export const title = "Runs";
const LIVE_MS = 1500;
const IDLE_MS = 10_000;

function startForm(onStarted) {
  const result = h("div");
  const button = h("button", { type: "submit", class: "primary" }, "Start run");
  const form = h(
    "form",
    {
      class: "row",
      "data-testid": "start-run",
      onsubmit: (event) => {
        event.preventDefault();
        const values = Object.fromEntries(new FormData(form));
        busy(button, result, async () => {
          const started = await post("/runs", { feed: values.feed, run_type: values.run_type || null });
          result.replaceChildren(notice(started.data ? "ok" : "info", started.message));
          onStarted();
        });
      },
    },
    choice("feed", "feed", FEEDS),
    choice("run_type", "type", RUN_TYPES),
    button,
  );
  return h("section", { class: "panel" }, h("h2", {}, "Start a run"), form, result);
}

/** Only a lag beyond the safety buffer is flagged in the table; the run page says the rest. */
function clockFlag(run) {
  const reading = feedClockReading(run);
  return reading?.beyond ? [" ", h("span", { class: "badge warn", title: reading.text, "data-testid": "clock-lag" }, "feed clock lag")] : null;
}

export function render(root, { query, session }) {
  const filters = { feed: query.get("feed") ?? "", type: query.get("type") ?? "", status: query.get("status") ?? "" };
  let limit = 50;
  const previous = new Map();
  const status = h("div");
  const tbody = h("tbody");
  const more = h("button", { type: "button", onclick: () => { limit = Math.min(limit + 50, 500); refresh(); } }, "Load more");
  const form = h(
    "form",
    { class: "filters", onchange: () => {
      Object.assign(filters, Object.fromEntries(new FormData(form)));
      replaceQuery(Object.fromEntries(Object.entries(filters).filter(([, v]) => v)));
      refresh();
    } },
    choice("feed", "feed", FEEDS, { value: filters.feed, any: "any" }),
    choice("type", "type", ["full", "incremental"], { value: filters.type, any: "any" }),
    choice("status", "status", STATE_FILTERS, { value: filters.status, any: "any" }),
  );

  async function load() {
    const { data } = await get("/runs", { ...filters, limit });
    const now = Date.now();
    status.replaceChildren();
    fill(
      tbody,
      data.length === 0 ? h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No runs match.")) : null,
      data.map((run) => {
        const rate = throughput(run, previous.get(run.run_id), now);
        previous.set(run.run_id, { records: run.records_fetched, at: now });
        return h(
          "tr",
          { "data-run": run.run_id, "data-state": run.state },
          h("td", {}, h("a", { href: `#/runs/${run.run_id}`, class: "mono" }, fmt.shortId(run.run_id))),
          h("td", {}, run.feed),
          h("td", {}, run.run_type, clockFlag(run)),
          h("td", { "data-testid": "state" }, badge(run.state)),
          h("td", { class: "nowrap" }, when(run.started_at, { relative: true })),
          h("td", { class: "nowrap" }, fmt.duration(secondsBetween(run.started_at, finishedAt(run)))),
          h("td", {}, progress(run.records_fetched, run.estimated_records, { bad: run.failed_partitions > 0 }),
            h("div", { class: "progress-label", "data-testid": "progress" }, `${fmt.int(run.records_fetched)} of ~${fmt.int(run.estimated_records)} stones · `,
              `${run.completed_partitions}/${run.expected_partitions} partitions`, run.failed_partitions ? `, ${run.failed_partitions} failed` : "")),
          h("td", { class: "num nowrap", "data-testid": "throughput" }, rate === null ? "–" : `${fmt.int(Math.round(rate))}/s`),
        );
      }),
    );
    more.hidden = data.length < limit || limit >= 500;
    return data.some((run) => ACTIVE.has(run.status)) ? LIVE_MS : IDLE_MS;
  }

  let stop = () => {};
  const refresh = () => {
    stop();
    stop = poll(load, IDLE_MS, (error) => status.replaceChildren(errorNotice(error)));
  };

  fill(
    root,
    h("h1", {}, "Runs"),
    session.admin ? startForm(() => refresh()) : null,
    h("section", { class: "panel" }, form),
    status,
    h("div", { class: "table-wrap" },
      h("table", { "data-testid": "runs" },
        h("thead", {}, h("tr", {}, ["run", "feed", "type", "status", "started", "duration", "progress", "throughput"].map((t) => h("th", {}, t)))),
        tbody)),
    h("div", { class: "row", style: { marginTop: ".6rem" } }, more),
  );
  refresh();
  return () => stop();
}
