// Heatmap: the live catalogue's price-per-carat x carat density, a run's density scan with its
// partition boundaries, and a preview of the scan and partitions a new run would get (admin).

import { FEEDS, get, post } from "../api.js";
import { densityChart, heatGrid } from "../chart.js";
import { busy, choice, errorNotice, fill, fmt, h, when } from "../dom.js";
import { replaceQuery } from "../router.js";
import { RUN_TYPES } from "../run-figures.js";

export const title = "Heatmap";

function partitionsTable(partitions, actual = null) {
  return h("table", { "data-testid": "scan-partitions" },
    h("thead", {}, h("tr", {}, ["partition", "price per ct", "estimated stones", actual ? "fetched" : null].filter(Boolean).map((t) => h("th", {}, t)))),
    h("tbody", {}, partitions.map((p) => h("tr", {},
      h("td", { class: "mono" }, p.id),
      h("td", { class: "nowrap" }, `${fmt.money(p.min)} – ${p.max === null ? "∞" : fmt.money(p.max)}`),
      h("td", { class: "num" }, fmt.int(p.estimated)),
      actual ? h("td", { class: "num" }, fmt.int(actual.get(p.id))) : null,
    ))));
}

function scanFacts(scan) {
  return h("p", { class: "small muted", "data-testid": "scan-facts" },
    `${fmt.int(scan.total)} stones, ${scan.partitions.length} partitions, ${scan.count_calls} count calls in ${scan.duration_s} s`,
    scan.updated_to ? [` · ${scan.run_type} window `, when(scan.updated_from), " → ", when(scan.updated_to)] : "");
}

/**
 * What the live-catalogue heatmap counts, from its filters: "live stones" only unfiltered; a
 * chosen availability or feed is named ("sold stones from nivoda-natural").
 */
function counted({ availability, feed }) {
  const which = availability ? `${availability.replace("_", " ")} stones` : "live stones";
  return feed ? `${which} from ${feed}` : which;
}

function catalogueSection() {
  const out = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const form = h("form", { class: "filters", onchange: () => load() },
    choice("feed", "feed", FEEDS, { any: "all feeds" }),
    choice("availability", "availability", ["available", "on_hold", "sold", "unavailable"], { any: "any" }));
  async function load() {
    try {
      const filters = Object.fromEntries(new FormData(form));
      const heatmap = await get("/analytics/price-per-carat", filters);
      const what = counted(filters);
      fill(out, h("p", { class: "small muted", "data-testid": "heat-total" }, `${fmt.int(heatmap.total)} ${what}`), heatGrid(heatmap, { what }));
    } catch (error) {
      fill(out, errorNotice(error));
    }
  }
  load();
  return h("section", { class: "panel" }, h("h2", {}, "Live catalogue: stones by price per carat and carat weight"), form, out);
}

function runSection(selected) {
  const out = h("div");
  const picker = h("select", { name: "run", "data-testid": "run-picker", onchange: () => show(picker.value) });
  async function show(runId) {
    if (!runId) return;
    replaceQuery({ run: runId });
    try {
      const { data: run } = await get(`/runs/${runId}`);
      if (!run.heatmap) {
        fill(out, h("p", { class: "muted" }, "This run has no stored density scan."));
        return;
      }
      const actual = new Map(run.partitions.map((p) => [p.partition_id, p.records_seen]));
      fill(out, scanFacts(run.heatmap), densityChart(run.heatmap), partitionsTable(run.heatmap.partitions, actual));
    } catch (error) {
      fill(out, errorNotice(error));
    }
  }
  (async () => {
    try {
      const { data: runs } = await get("/runs", { limit: 100 });
      if (runs.length === 0) {
        fill(out, h("p", { class: "muted" }, "No runs yet."));
        return;
      }
      fill(picker, runs.map((r) => h("option", { value: r.run_id, selected: r.run_id === selected },
        `${fmt.shortId(r.run_id)} · ${r.feed} · ${r.run_type} · ${r.state} · ${fmt.ago(r.started_at)}`)));
      show(picker.value);
    } catch (error) {
      fill(out, errorNotice(error));
    }
  })();
  return h("section", { class: "panel" }, h("h2", {}, "A run's density scan and partition boundaries"), h("label", {}, "run", picker), out);
}

function previewSection() {
  const out = h("div");
  const button = h("button", { type: "submit", class: "primary" }, "Scan now");
  const number = (name, label, min, max, placeholder) =>
    h("label", {}, label, h("input", { type: "number", name, min, max, step: 1, placeholder }));
  const form = h("form", { class: "filters", "data-testid": "preview-form", onsubmit: (event) => {
    event.preventDefault();
    const values = Object.fromEntries([...new FormData(form)].filter(([, v]) => v !== ""));
    const body = { feed: values.feed, run_type: values.run_type ?? null };
    for (const name of ["max_workers", "min_records_per_worker", "max_count_calls"]) if (name in values) body[name] = Number(values[name]);
    fill(out, h("p", { class: "muted" }, "Scanning the feed…"));
    busy(button, out, async () => {
      const { data: scan } = await post("/heatmap/preview", body);
      fill(out, scanFacts(scan), densityChart(scan), partitionsTable(scan.partitions));
    });
  } },
    choice("feed", "feed", FEEDS),
    choice("run_type", "run type", RUN_TYPES),
    number("max_workers", "partitions (max)", 1, 1000, "setting"),
    number("min_records_per_worker", "min stones per partition", 1, 10_000_000, "setting"),
    number("max_count_calls", "count-call budget", 5, 1000, "setting"),
    h("div", {}, button));
  return h("section", { class: "panel" }, h("h2", {}, "Preview a new scan"),
    h("p", { class: "small muted" }, "Counts stones in the feed as the scheduler would and plans partitions; nothing is started. Each count is a supplier request."),
    form, out);
}

export function render(root, { query, session }) {
  fill(root, h("h1", {}, "Heatmap"), catalogueSection(), runSection(query.get("run")), session.admin ? previewSection() : null);
}
