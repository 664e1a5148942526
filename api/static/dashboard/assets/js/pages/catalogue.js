// Catalogue: search with the API's own filters (read from its OpenAPI description), a sortable
// table paged by keyset ("load more"), and CSV export of the whole result.

import { get, openapi } from "../api.js";
import { toCsv, download } from "../csv.js";
import { badge, busy, errorNotice, fill, fmt, h, notice, when } from "../dom.js";
import { replaceQuery } from "../router.js";

export const title = "Catalogue";
const PAGE = 50;
const EXPORT_PAGE = 200;
const EXPORT_LIMIT = 10_000;
const CONTROLS = new Set(["sort", "order", "limit", "page", "cursor", "fields", "count"]);
const PRIMARY = ["feed", "shape", "color", "clarity", "cut", "availability", "carat", "price", "price_per_carat", "lab_grown"];

// Table columns: [field, heading, sort key or null, cell renderer]
const COLUMNS = [
  ["shape", "shape", null, (d) => d.shape],
  ["carats", "carats", "carats", (d) => d.carats.toFixed(2)],
  ["color", "colour", "color", (d) => (d.fancy_color ? `${d.fancy_intensity ?? ""} ${d.fancy_color}`.trim() : d.color ?? "–")],
  ["clarity", "clarity", "clarity", (d) => d.clarity ?? "–"],
  ["cut", "cut", "cut", (d) => d.cut ?? "–"],
  ["lab_grown", "origin", null, (d) => (d.lab_grown ? "lab" : "natural")],
  ["certificate_lab", "lab", "certificate_lab", (d) => d.certificate_lab ?? "–"],
  ["ratio", "ratio", "ratio", (d) => d.ratio ?? "–"],
  ["rating", "rating", "rating", (d) => d.rating ?? "–"],
  ["price_per_carat", "cost / ct", "price_per_carat", (d) => fmt.money(d.price_per_carat)],
  ["retail_price", "price", "price", (d) => fmt.money(d.retail_price)],
  ["availability", "availability", null, (d) => badge(d.availability)],
  ["created_at", "listed", "created_at", (d) => when(d.created_at, { relative: true })],
];
const NUMERIC = new Set(["carats", "ratio", "rating", "price_per_carat", "retail_price"]);

/** The search parameters the API declares, grouped the way the form shows them. */
async function searchParameters() {
  const schema = await openapi();
  const declared = schema.paths["/api/v2/diamonds"].get.parameters;
  const lists = [];
  const ranges = new Map();
  const flags = [];
  let sortKeys = [];
  for (const p of declared) {
    if (p.name === "sort") sortKeys = p.schema.enum;
    if (CONTROLS.has(p.name)) continue;
    const range = /^(.*)_(min|max)$/.exec(p.name);
    if (range) ranges.set(range[1], { name: range[1], description: p.description.replace(/^(min|max)imum /, "").replace(" (inclusive)", ""), integer: p.schema.type === "integer" });
    else if (p.schema.type === "boolean") flags.push({ name: p.name, description: p.description });
    else lists.push({ name: p.name, choices: p.schema.items?.enum ?? null, description: p.description });
  }
  return { lists, ranges: [...ranges.values()], flags, sortKeys };
}

function listField(spec, values) {
  const label = spec.name.replaceAll("_", " ");
  if (spec.choices) {
    return h("label", { title: spec.description }, label,
      h("select", { name: spec.name, multiple: true, size: Math.min(spec.choices.length, 5) },
        spec.choices.map((choice) => h("option", { value: choice, selected: values.includes(choice) }, choice))));
  }
  return h("label", { title: spec.description }, label, h("input", { name: spec.name, value: values.join(","), placeholder: "comma-separated" }));
}

function rangeField(spec, query) {
  // The label holds both ends, which would otherwise name only the first: each end names itself.
  const input = (end) => h("input", { name: `${spec.name}_${end}`, type: "number", min: 0, step: spec.integer ? 1 : "any", placeholder: end,
    "aria-label": `${spec.name.replaceAll("_", " ")} ${end === "min" ? "from" : "to"}`, value: query.get(`${spec.name}_${end}`) ?? "" });
  return h("label", { title: spec.description }, spec.name.replaceAll("_", " "), h("div", { class: "range" }, input("min"), input("max")));
}

function flagField(spec, value) {
  return h("label", { title: spec.description }, spec.name.replaceAll("_", " "),
    h("select", { name: spec.name }, [["", "any"], ["true", "yes"], ["false", "no"]].map(([v, t]) => h("option", { value: v, selected: v === (value ?? "") }, t))));
}

/** The form's values as API parameters (lists repeated, empty fields left out). */
function formParameters(form) {
  const params = {};
  for (const element of form.elements) {
    if (!element.name) continue;
    if (element.multiple) {
      const chosen = [...element.selectedOptions].map((o) => o.value);
      if (chosen.length) params[element.name] = chosen;
    } else if (element.value.trim() !== "") {
      params[element.name] = element.value.trim();
    }
  }
  return params;
}

/** The search a URL asks for (`#/catalogue?shape=ROUND&sort=price`), as API parameters. */
function queryParameters(query) {
  const params = {};
  for (const [name, value] of query) {
    if (name !== "sort" && name !== "order") params[name] = [...(params[name] ?? []), value];
  }
  return params;
}

export async function render(root, { query }) {
  const state = {
    sort: query.get("sort") ?? "created_at",
    order: query.get("order") ?? "desc",
    params: queryParameters(query),
    cursor: null,
    rows: [],
    total: null,
    estimated: false,
    form: null,
  };
  const status = h("div");
  const summary = h("p", { class: "muted", "data-testid": "summary" });
  const thead = h("thead");
  const tbody = h("tbody");
  const more = h("button", { type: "button", "data-testid": "load-more", hidden: true, onclick: () => busy(more, status, () => page(true)) }, "Load more");
  const exportButton = h("button", { type: "button", "data-testid": "export-csv", onclick: () => busy(exportButton, status, exportCsv) }, "Export CSV");
  const results = h("div", { "data-testid": "results" });
  const formSlot = h("section", { class: "panel" }, h("p", { class: "muted" }, "Loading the search form…"));

  function header() {
    fill(thead, h("tr", {}, COLUMNS.map(([name, heading, key]) => {
      const numeric = NUMERIC.has(name) ? " num" : "";
      if (!key) return h("th", { class: numeric }, heading);
      const sorted = key === state.sort ? ` sorted-${state.order}` : "";
      const ariaSort = key === state.sort ? (state.order === "asc" ? "ascending" : "descending") : "none";
      // The heading's button makes sorting reachable from the keyboard; its click reaches the th.
      return h("th", { class: `sortable${sorted}${numeric}`, "data-sort": key, "aria-sort": ariaSort, title: `sort by ${key}`, onclick: () => {
        state.order = key === state.sort && state.order === "asc" ? "desc" : "asc";
        state.sort = key;
        search();
      } }, h("button", { type: "button", class: "sort" }, heading));
    })));
  }

  const row = (d) => h("tr", { "data-id": d.id }, COLUMNS.map(([name, , , show]) => h("td", { class: NUMERIC.has(name) ? "num" : "", "data-field": name }, show(d))));

  async function page(append) {
    const started = performance.now();
    const response = await get("/diamonds", {
      ...state.params, sort: state.sort, order: state.order, limit: PAGE, fields: "slim",
      ...(append ? { cursor: state.cursor, count: false } : {}),
    });
    state.cursor = response.pagination.next_cursor;
    if (!append) {
      state.rows = [];
      state.total = response.pagination.total;
      state.estimated = response.pagination.total_estimated;
      tbody.replaceChildren();
    }
    state.rows.push(...response.data);
    tbody.append(...response.data.map(row));
    if (state.rows.length === 0) {
      tbody.append(h("tr", {}, h("td", { colspan: COLUMNS.length, class: "muted", "data-testid": "no-match" }, "No stones match this search.")));
    }
    more.hidden = !response.pagination.has_more;
    const total = state.total === null ? "" : `${state.estimated ? "about " : ""}${fmt.int(state.total)} stones match · `;
    summary.textContent = `${total}showing ${fmt.int(state.rows.length)}`;
    // How long the page took in the browser (request, parsing, rendering): the load test reads it.
    results.dataset.pageMs = String(Math.round(performance.now() - started));
  }

  /** A new search from the form (once it is built) and the current sort; the URL follows it. */
  async function search() {
    if (state.form) {
      state.params = formParameters(state.form.element);
      state.form.sortSelect.value = state.sort;
      state.form.orderSelect.value = state.order;
    }
    state.cursor = null;
    replaceQuery([...Object.entries(state.params).map(([k, v]) => [k, Array.isArray(v) ? v.join(",") : v]), ["sort", state.sort], ["order", state.order]]);
    header();
    status.replaceChildren();
    delete results.dataset.pageMs;
    try {
      await page(false);
    } catch (error) {
      // The previous search's rows would pass for this one's answer: the refused search shows none.
      state.rows = [];
      tbody.replaceChildren();
      summary.textContent = "";
      more.hidden = true;
      status.replaceChildren(errorNotice(error));
    }
  }

  async function exportCsv() {
    const rows = [];
    let cursor = null;
    do {
      status.replaceChildren(notice("info", `Exporting… ${fmt.int(rows.length)} stones so far`));
      const response = await get("/diamonds", {
        ...state.params, sort: state.sort, order: state.order, limit: EXPORT_PAGE, fields: "full", count: false, ...(cursor ? { cursor } : {}),
      });
      rows.push(...response.data);
      cursor = response.pagination.next_cursor;
    } while (cursor && rows.length < EXPORT_LIMIT);
    const columns = rows.length ? Object.keys(rows[0]) : COLUMNS.map(([name]) => name);
    const stamp = new Date().toISOString().replace(/[-:]/g, "").slice(0, 15);
    download(`diamonds-${stamp}.csv`, toCsv(columns, rows.slice(0, EXPORT_LIMIT)));
    status.replaceChildren(notice(cursor ? "warn" : "ok", cursor
      ? `Exported the first ${fmt.int(EXPORT_LIMIT)} stones; narrow the search to export the rest.`
      : `Exported ${fmt.int(rows.length)} stones.`));
  }

  /** The filter form, built from the API's declared search parameters. */
  function buildForm(spec) {
    const initial = (name) => query.getAll(name).flatMap((v) => v.split(",")).filter(Boolean);
    const byName = (name) => spec.lists.find((l) => l.name === name) ?? spec.ranges.find((r) => r.name === name) ?? spec.flags.find((f) => f.name === name);
    const field = (item) => (spec.lists.includes(item) ? listField(item, initial(item.name)) : spec.ranges.includes(item) ? rangeField(item, query) : flagField(item, query.get(item.name)));
    const primary = PRIMARY.map(byName).filter(Boolean);
    const secondary = [...spec.lists, ...spec.ranges, ...spec.flags].filter((item) => !primary.includes(item));
    const sortSelect = h("select", {}, spec.sortKeys.map((k) => h("option", { value: k, selected: k === state.sort }, k.replaceAll("_", " "))));
    const orderSelect = h("select", {}, ["desc", "asc"].map((o) => h("option", { value: o, selected: o === state.order }, o === "asc" ? "ascending" : "descending")));
    const element = h(
      "form",
      { class: "filters", "data-testid": "search-form", onsubmit: (event) => {
        event.preventDefault();
        state.sort = sortSelect.value;
        state.order = orderSelect.value;
        search();
      } },
      primary.map(field),
      h("label", {}, "sort by", sortSelect),
      h("label", {}, "order", orderSelect),
      h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, "Search"), h("button", { type: "reset" }, "Clear")),
      h("details", { class: "more" }, h("summary", {}, "More filters"), h("div", { class: "filters" }, secondary.map(field))),
    );
    element.addEventListener("reset", () => setTimeout(search));
    return { element, sortSelect, orderSelect };
  }

  fill(
    root,
    h("h1", {}, "Catalogue"),
    formSlot,
    status,
    h("div", { class: "row spread" }, summary, exportButton),
    h("div", { class: "table-wrap" }, h("table", { "data-testid": "stones" }, thead, tbody)),
    h("div", { class: "row", style: { marginTop: ".6rem" } }, more),
    results,
  );
  // The first page does not wait for the form: its parameters come from the URL.
  const firstPage = search();
  try {
    state.form = buildForm(await searchParameters());
    fill(formSlot, state.form.element);
  } catch (error) {
    fill(formSlot, errorNotice(error));
  }
  await firstPage;
}
