// Overview: catalogue size by availability and feed, last successful run and watermark per feed,
// runs of the last 7 days, and what needs attention (failed, skipped, stalled runs; dead letters).

import { get } from "../api.js";
import { stackedBars } from "../chart.js";
import { badge, card, errorNotice, fill, fmt, h, poll, secondsBetween, when } from "../dom.js";
import { ACTIVE } from "../run-figures.js";

export const title = "Overview";
const REFRESH_MS = 10_000;
const AVAILABILITIES = ["available", "on_hold", "sold", "unavailable"];
// Dead letters are counted from one page of the list: a full page means there are more.
const LETTERS_PAGE = 500;
const STATUS_COLOURS = { completed: "#1f8a4c", failed: "#c53030", skipped: "#b7791f", cancelled: "#8a94a6", active: "#2b6cb0" };

async function load() {
  const { data: watermarks } = await get("/watermarks");
  const feeds = watermarks.map((w) => w.feed);
  const [inventories, lastRuns, recent, stalled, failed, skipped, letters] = await Promise.all([
    Promise.all(feeds.map((feed) => get("/analytics/inventory", { feed }))),
    Promise.all(feeds.map((feed) => get("/runs", { feed, status: "completed", limit: 1 }))),
    get("/analytics/runs", { days: 7, limit: 1000 }),
    get("/runs", { status: "stalled", limit: 20 }),
    get("/runs", { status: "failed", limit: 20 }),
    get("/runs", { status: "skipped", limit: 20 }),
    get("/dead-letters", { limit: LETTERS_PAGE }),
  ]);
  return {
    watermarks,
    inventories,
    lastRuns: lastRuns.map((r) => r.data[0] ?? null),
    recent: recent.data,
    alerts: [...stalled.data, ...failed.data, ...skipped.data],
    letters: letters.data,
    lettersCapped: letters.data.length >= LETTERS_PAGE,
  };
}

function catalogueTable(inventories) {
  const totals = Object.fromEntries(AVAILABILITIES.map((a) => [a, inventories.reduce((sum, inv) => sum + inv.by_availability[a], 0)]));
  return h(
    "table",
    { "data-testid": "catalogue-by-feed" },
    h("thead", {}, h("tr", {}, h("th", {}, "feed"), AVAILABILITIES.map((a) => h("th", { class: "num" }, a.replace("_", " "))), h("th", { class: "num" }, "live"))),
    h(
      "tbody",
      {},
      inventories.map((inv) =>
        h("tr", { "data-feed": inv.feed }, h("td", {}, inv.feed), AVAILABILITIES.map((a) => h("td", { class: "num" }, fmt.int(inv.by_availability[a]))), h("td", { class: "num" }, fmt.int(inv.total))),
      ),
      h("tr", {}, h("th", {}, "all feeds"), AVAILABILITIES.map((a) => h("th", { class: "num" }, fmt.int(totals[a]))),
        h("th", { class: "num", "data-testid": "catalogue-total" }, fmt.int(inventories.reduce((sum, inv) => sum + inv.total, 0)))),
    ),
  );
}

function feedsTable(watermarks, lastRuns) {
  return h(
    "table",
    { "data-testid": "feeds" },
    h("thead", {}, h("tr", {}, ["feed", "last successful run", "completed", "took", "watermark"].map((t) => h("th", {}, t)))),
    h(
      "tbody",
      {},
      watermarks.map((mark, i) => {
        const run = lastRuns[i];
        return h(
          "tr",
          { "data-feed": mark.feed },
          h("td", {}, mark.feed),
          h("td", {}, run ? h("a", { href: `#/runs/${run.run_id}`, class: "mono" }, fmt.shortId(run.run_id)) : h("span", { class: "muted" }, "none yet"), run ? ` ${run.run_type}` : ""),
          h("td", {}, run ? when(run.completed_at, { relative: true }) : "–"),
          h("td", {}, run ? fmt.duration(secondsBetween(run.started_at, run.completed_at)) : "–"),
          h("td", { "data-testid": "watermark" }, mark.last_updated_at ? when(mark.last_updated_at) : "not set"),
        );
      }),
    ),
  );
}

function runsByDay(runs) {
  const days = [];
  for (let back = 6; back >= 0; back -= 1) {
    const day = new Date(Date.now() - back * 86_400_000);
    days.push({ key: fmt.day(day), label: day.toLocaleDateString("en-GB", { weekday: "short" }), parts: {} });
  }
  for (const run of runs) {
    const day = days.find((d) => d.key === fmt.day(new Date(run.started_at)));
    if (!day) continue;
    const status = ACTIVE.has(run.status) ? "active" : run.status;
    day.parts[status] = (day.parts[status] ?? 0) + 1;
  }
  return days;
}

/** "12", or "500+" when the page of dead letters was full. The list holds only the outstanding letters
 * (neither replayed nor dismissed): the API's default. */
const waitingText = (letters, capped) => `${fmt.int(letters.length)}${capped ? "+" : ""}`;

function alertsList(alerts, letters, capped) {
  const seen = new Set();
  const items = alerts
    .filter((run) => !seen.has(run.run_id) && seen.add(run.run_id))
    .filter((run) => secondsBetween(run.started_at) < 7 * 86_400)
    .map((run) =>
      h("li", { "data-testid": "alert" }, badge(run.state), " ", h("a", { href: `#/runs/${run.run_id}`, class: "mono" }, fmt.shortId(run.run_id)),
        ` ${run.feed} · `, when(run.started_at, { relative: true }), " · ", h("span", { class: "muted" }, run.status_reason ?? "")),
    );
  if (letters.length) {
    items.unshift(h("li", { "data-testid": "alert" }, badge("failed"), " ", h("a", { href: "#/dead-letters" }, `${waitingText(letters, capped)} dead letter${letters.length > 1 ? "s" : ""} waiting`)));
  }
  return items.length ? h("ul", { class: "stack", "data-testid": "alerts" }, items) : h("p", { class: "muted", "data-testid": "alerts" }, "Nothing needs attention.");
}

export function render(root) {
  const status = h("div");
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  fill(root, h("div", { class: "row spread" }, h("h1", {}, "Overview"), h("span", { class: "muted small" }, `refreshes every ${REFRESH_MS / 1000} s`)), status, body);
  return poll(
    async () => {
      const data = await load();
      status.replaceChildren();
      const live = data.inventories.reduce((sum, inv) => sum + inv.total, 0);
      const available = data.inventories.reduce((sum, inv) => sum + inv.by_availability.available, 0);
      const active = data.recent.filter((r) => ACTIVE.has(r.status)).length;
      fill(
        body,
        h(
          "div",
          { class: "cards" },
          card("live stones", fmt.int(live), "card-live"),
          card("available", fmt.int(available), "card-available"),
          card("runs, last 7 days", fmt.int(data.recent.length), "card-runs"),
          card("active runs", fmt.int(active), "card-active"),
          card("dead letters waiting", waitingText(data.letters, data.lettersCapped), "card-dead-letters"),
        ),
        h("div", { class: "grid" },
          h("section", { class: "panel" }, h("h2", {}, "Catalogue by feed and availability"), catalogueTable(data.inventories)),
          h("section", { class: "panel" }, h("h2", {}, "Feeds"), feedsTable(data.watermarks, data.lastRuns)),
        ),
        h("div", { class: "grid" },
          h("section", { class: "panel" }, h("h2", {}, "Runs, last 7 days"), h("p", { class: "small muted", "data-testid": "days-zone" }, `days in ${fmt.zone()}`), stackedBars(runsByDay(data.recent), STATUS_COLOURS),
            h("p", { class: "small muted" }, Object.entries(STATUS_COLOURS).map(([name, colour]) => [h("span", { style: { color: colour } }, "■"), ` ${name}  `]))),
          h("section", { class: "panel" }, h("h2", {}, "Alerts"), alertsList(data.alerts, data.letters, data.lettersCapped)),
        ),
      );
    },
    REFRESH_MS,
    (error) => status.replaceChildren(errorNotice(error)),
  );
}
