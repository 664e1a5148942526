// Pricing rules: table, create / edit / deactivate with the API's validation messages shown on
// their fields, the impact previewed before saving, and repricing jobs with progress, revert and
// (a failed one) resume.

import { FEEDS, del, get, openapi, post, put } from "../api.js";
import { badge, busy, confirmAction, errorNotice, fill, fmt, h, notice, poll, progress, when } from "../dom.js";

export const title = "Pricing rules";
const STONE_TYPES = ["natural", "lab", "fancy"];
const GRADE_FIELDS = [["shapes", "shapes"], ["colors", "colours"], ["clarities", "clarities"], ["cuts", "cut grades"]];
const NUMBER_FIELDS = [["carat_min", "carats from"], ["carat_max", "carats to"], ["cost_min", "cost from ($)"], ["cost_max", "cost to ($)"]];
const JOB_LIVE_MS = 700;
const JOB_IDLE_MS = 10_000;

async function gradeChoices() {
  const rule = (await openapi()).components.schemas.RuleIn.properties;
  return Object.fromEntries(GRADE_FIELDS.map(([name]) => [name, rule[name].items?.enum ?? []]));
}

const listText = (values) => (values?.length ? values.join(", ") : "any");
/** A rule's bounds; `show` formats each end (costs are money: dollars with cents). */
const range = (low, high, show = String) => (low === null && high === null ? "any" : `${show(low ?? "0")} – ${high === null ? "∞" : show(high)}`);

function markup(rule) {
  if (rule.markup_multiplier !== null) return `× ${rule.markup_multiplier}`;
  const points = Number(rule.margin_modifier);
  return `${points >= 0 ? "+" : ""}${rule.margin_modifier} pts margin`;
}

/** The rule editor: a form whose fields carry the API's validation messages. */
function editor(choices, rule, { onPreview, onSave, onClose }) {
  const errors = new Map();
  const fieldError = (name) => {
    const slot = h("div", { class: "field-error", "data-error-for": name });
    errors.set(name, slot);
    return slot;
  };
  const labelled = (name, label, input, extra = {}) => h("label", { ...extra, "data-field": name }, label, input, fieldError(name));
  const value = (name) => rule?.[name] ?? "";
  const mode = rule?.markup_multiplier !== null && rule?.markup_multiplier !== undefined ? "markup_multiplier" : "margin_modifier";

  const form = h(
    "form",
    { class: "editor", "data-testid": "rule-editor", novalidate: true, onsubmit: (event) => event.preventDefault() },
    labelled("priority", "priority (lower wins)", h("input", { name: "priority", type: "number", min: 0, step: 1, value: value("priority") })),
    labelled("description", "description", h("input", { name: "description", value: value("description"), maxlength: 500 }), { class: "wide" }),
    labelled("feed", "feed", h("select", { name: "feed" }, h("option", { value: "" }, "any feed"), FEEDS.map((f) => h("option", { value: f, selected: f === rule?.feed }, f)))),
    labelled("stone_type", "stone type", h("select", { name: "stone_type" }, h("option", { value: "" }, "any"), STONE_TYPES.map((t) => h("option", { value: t, selected: t === rule?.stone_type }, t)))),
    GRADE_FIELDS.map(([name, label]) => labelled(name, label, h("select", { name, multiple: true, size: 4 },
      choices[name].map((c) => h("option", { value: c, selected: rule?.[name]?.includes(c) }, c))))),
    NUMBER_FIELDS.map(([name, label]) => labelled(name, label, h("input", { name, type: "number", min: 0, step: "0.01", value: value(name) }))),
    labelled("pricing", "price as", h("select", { name: "mode" },
      h("option", { value: "margin_modifier", selected: mode === "margin_modifier" }, "margin modifier (points over the type's base margin)"),
      h("option", { value: "markup_multiplier", selected: mode === "markup_multiplier" }, "markup multiplier (retail = cost ×)"))),
    labelled("markup_multiplier", "value", h("input", { name: "amount", type: "number", step: "any", value: rule ? (rule.markup_multiplier ?? rule.margin_modifier ?? "") : "" })),
    labelled("rating", "rating (1–10)", h("input", { name: "rating", type: "number", min: 1, max: 10, step: 1, value: value("rating") })),
    h("label", { class: "inline wide" }, h("input", { type: "checkbox", name: "reprice", checked: true }), "reprice the catalogue when saved"),
  );
  // The amount's errors belong to whichever field the mode sends.
  const amountErrors = errors.get("markup_multiplier");
  errors.set("margin_modifier", amountErrors);
  errors.set("amount", amountErrors);

  /** The rule as the API takes it: every field present (PUT replaces all), numbers as strings. */
  function body() {
    const data = new FormData(form);
    const text = (name) => (data.get(name) ?? "").toString().trim() || null;
    const payload = {
      priority: text("priority") === null ? null : Number(text("priority")),
      description: text("description"),
      feed: text("feed"),
      stone_type: text("stone_type"),
      rating: text("rating") === null ? null : Number(text("rating")),
      markup_multiplier: null,
      margin_modifier: null,
    };
    for (const [name] of GRADE_FIELDS) {
      const chosen = data.getAll(name).map(String);
      payload[name] = chosen.length ? chosen : null;
    }
    for (const [name] of NUMBER_FIELDS) payload[name] = text(name);
    payload[text("mode")] = text("amount");
    return payload;
  }

  function clearErrors() {
    for (const slot of new Set(errors.values())) slot.textContent = "";
    form.querySelectorAll(".invalid").forEach((element) => element.classList.remove("invalid"));
  }

  /** Put each validation message next to its field; true when the error was placed. */
  function showErrors(error) {
    if (error.status !== 422 || !Array.isArray(error.details)) return false;
    let placed = false;
    for (const detail of error.details) {
      const name = String(detail.parameter ?? "").replace(/^(body\.|rule\.)+/, "").split(".")[0];
      const slot = errors.get(name);
      if (!slot) continue;
      slot.textContent = detail.message;
      slot.parentElement.classList.add("invalid");
      placed = true;
    }
    return placed;
  }

  /** Checks worth making before a round trip; the API checks everything again. */
  function localErrors(payload) {
    const found = [];
    if (payload.priority === null) found.push({ parameter: "priority", message: "a priority is required" });
    if (payload.markup_multiplier === null && payload.margin_modifier === null) found.push({ parameter: "amount", message: "give the markup multiplier or the margin modifier" });
    return found;
  }

  const result = h("div");
  const previewButton = h("button", { type: "button", "data-testid": "preview", onclick: () => run(previewButton, onPreview, "Not previewed") }, "Preview impact");
  const saveButton = h("button", { type: "button", class: "primary", "data-testid": "save", onclick: () => run(saveButton, onSave, "Not saved") }, rule ? "Save changes" : "Create rule");

  /** `refused` heads the API's refusal: a refused preview saved nothing, so it must not say so. */
  async function run(button, action, refused) {
    clearErrors();
    const payload = body();
    const local = localErrors(payload);
    if (local.length) {
      showErrors({ status: 422, details: local });
      result.replaceChildren(notice("error", "Fix the fields marked in red."));
      return;
    }
    button.disabled = true;
    try {
      await action(payload, result, form.elements.reprice.checked);
    } catch (error) {
      result.replaceChildren(showErrors(error) ? notice("error", [h("strong", {}, `${refused}: `), error.message]) : errorNotice(error));
    } finally {
      button.disabled = false;
    }
  }

  return h("section", { class: "panel", "data-testid": "rule-panel" },
    h("h2", {}, rule ? `Edit rule ${rule.id}` : "New pricing rule"),
    form,
    h("div", { class: "row", style: { marginTop: "1rem" } }, previewButton, saveButton, h("button", { type: "button", onclick: onClose }, "Close")),
    result);
}

function previewReport(report) {
  return h("div", { "data-testid": "preview-report", class: "stack", style: { marginTop: ".8rem" } },
    h("div", { class: "preview-figures" },
      [["live stones priced", fmt.int(report.stones), "stones"], ["would change", fmt.int(report.changed), "changed"], ["increase", fmt.int(report.increased), "increased"],
        ["decrease", fmt.int(report.decreased), "decreased"], ["total change", fmt.money(report.total_delta), "delta"],
        ["catalogue value", `${fmt.money(report.total_current)} → ${fmt.money(report.total_candidate)}`, "value"]]
        .map(([label, value, id]) => h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value small", "data-testid": `preview-${id}` }, value)))),
    report.examples.length
      ? h("table", {}, h("thead", {}, h("tr", {}, ["stone", "feed", "price now", "would be", "change"].map((t) => h("th", {}, t)))),
        h("tbody", {}, report.examples.map((e) => h("tr", {}, h("td", { class: "mono" }, e.supplier_stone_id), h("td", {}, e.feed),
          h("td", { class: "num" }, fmt.money(e.current_price)), h("td", { class: "num" }, fmt.money(e.candidate_price)), h("td", { class: "num" }, fmt.money(e.delta))))))
      : h("p", { class: "muted" }, "No stone's price would change."));
}

export async function render(root) {
  const choices = await gradeChoices();
  const status = h("div");
  const slot = h("div");
  const rulesBody = h("tbody");
  const jobsBody = h("tbody");
  const showInactive = h("input", { type: "checkbox", onchange: () => loadRules() });
  let stopJobs = () => {};

  function open(rule = null) {
    fill(slot, editor(choices, rule, {
      onPreview: async (payload, out) => {
        const report = await post("/pricing/preview", rule ? { action: "update", rule_id: rule.id, rule: payload } : { action: "create", rule: payload });
        out.replaceChildren(previewReport(report));
      },
      onSave: async (payload, out, reprice) => {
        const query = { reprice };
        const saved = rule ? await put(`/pricing/rules/${rule.id}`, payload, query) : await post("/pricing/rules", payload, query);
        fill(slot, notice("ok", [`Rule ${saved.data.id} saved as rule version ${saved.version}.`,
          saved.repricing_job ? ` Repricing job ${saved.repricing_job.id} started; its progress is below.` : " The catalogue was not repriced."]));
        await loadRules();
        watchJobs();
      },
      onClose: () => slot.replaceChildren(),
    }));
    slot.scrollIntoView({ block: "start" });
  }

  async function deactivate(rule, button) {
    await busy(button, status, async () => {
      const report = await post("/pricing/preview", { action: "deactivate", rule_id: rule.id });
      const question = `Deactivate rule ${rule.id} (priority ${rule.priority})? ${fmt.int(report.changed)} of ${fmt.int(report.stones)} live stones would change price, ${fmt.money(report.total_delta)} in total; the catalogue is repriced.`;
      if (!(await confirmAction("Deactivate rule", question, "Deactivate"))) return;
      const changed = await del(`/pricing/rules/${rule.id}`);
      status.replaceChildren(notice("ok", `Rule ${rule.id} deactivated (rule version ${changed.version}).`));
      await loadRules();
      watchJobs();
    });
  }

  async function loadRules() {
    const { data, version } = await get("/pricing/rules", { include_inactive: showInactive.checked });
    fill(rulesBody, data.map((rule) => {
      const deactivateButton = h("button", { type: "button", class: "small", "data-testid": "deactivate", onclick: () => deactivate(rule, deactivateButton) }, "Deactivate");
      return h("tr", { "data-rule": rule.id, class: rule.active ? "" : "muted" },
        h("td", { class: "num" }, rule.priority),
        h("td", {}, rule.description ?? ""),
        h("td", {}, rule.feed ?? "any"),
        h("td", {}, rule.stone_type ?? "any"),
        h("td", { class: "small" }, GRADE_FIELDS.filter(([name]) => rule[name]).map(([name, label]) => h("div", {}, `${label}: ${listText(rule[name])}`)),
          rule.carat_min !== null || rule.carat_max !== null ? h("div", {}, `carats: ${range(rule.carat_min, rule.carat_max)}`) : null),
        h("td", { class: "nowrap", "data-testid": "cost" }, range(rule.cost_min, rule.cost_max, fmt.money)),
        h("td", { class: "nowrap" }, markup(rule)),
        h("td", { class: "num" }, rule.rating ?? "–"),
        h("td", { class: "nowrap" }, rule.active
          ? [h("button", { type: "button", class: "small", "data-testid": "edit", onclick: () => open(rule) }, "Edit"), " ", deactivateButton]
          : badge("cancelled")),
      );
    }));
    return version;
  }

  /** Failed jobs whose resume request is in flight: their button stays disabled across re-renders. */
  const resuming = new Set();
  let jobs = [];

  function jobAction(job) {
    if (job.status === "completed" && !job.reverted_at) {
      const revertButton = h("button", { type: "button", class: "small", "data-testid": "revert", onclick: async () => {
        if (!(await confirmAction("Revert repricing", `Restore the rules that job ${job.id} replaced and reprice the catalogue back?`, "Revert"))) return;
        await busy(revertButton, status, async () => {
          const { data: revert } = await post(`/pricing/jobs/${job.id}/revert`);
          status.replaceChildren(notice("ok", `Reverting: job ${revert.id} reprices the catalogue back.`));
          await loadRules();
          watchJobs();
        });
      } }, "Revert");
      return revertButton;
    }
    if (job.status === "failed") {
      const inFlight = resuming.has(job.id);
      return h("button", { type: "button", class: "small", "data-testid": "resume", "aria-label": `Resume repricing job ${job.id}`,
        disabled: inFlight, "aria-busy": inFlight ? "true" : null, onclick: () => resume(job) }, inFlight ? "Resuming…" : "Resume");
    }
    return null;
  }

  /** Continue a failed job from its last committed batch; the API refuses (409) once the rules changed since. */
  async function resume(job) {
    const question = `Continue job ${job.id} from its last committed batch (${fmt.int(job.processed)} of ${fmt.int(job.total)} stones done)? It reprices the rest of the catalogue to rule version ${job.to_version}.`;
    if (!(await confirmAction("Resume repricing", question, "Resume", false))) return;
    resuming.add(job.id);
    renderJobs();
    try {
      await post(`/pricing/jobs/${job.id}/resume`);
      status.replaceChildren(notice("ok", `Job ${job.id} resumed; its progress is below.`));
    } catch (error) {
      status.replaceChildren(notice("error", [h("strong", {}, `Job ${job.id} not resumed: `), error.message]));
    } finally {
      resuming.delete(job.id);
      watchJobs();
    }
  }

  function renderJobs() {
    fill(jobsBody, jobs.length ? null : h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No repricing jobs yet.")), jobs.map((job) =>
      h("tr", { "data-job": job.id, "data-status": job.status },
        h("td", { class: "num" }, job.id),
        h("td", {}, badge(job.reverted_at ? "reverted" : job.status)),
        h("td", {}, job.reason),
        h("td", {}, progress(job.processed, job.total), h("div", { class: "progress-label" }, `${fmt.int(job.processed)} of ${fmt.int(job.total)}`)),
        h("td", { class: "num" }, fmt.int(job.changed)),
        h("td", { class: "num" }, fmt.money(job.price_delta)),
        h("td", { class: "nowrap" }, when(job.created_at, { relative: true })),
        h("td", {}, jobAction(job), job.error ? h("div", { class: "error-text" }, job.error) : null),
      )));
  }

  async function loadJobs() {
    ({ data: jobs } = await get("/pricing/jobs", { limit: 20 }));
    renderJobs();
    return jobs.some((job) => job.status === "pending" || job.status === "running") ? JOB_LIVE_MS : JOB_IDLE_MS;
  }

  function watchJobs() {
    stopJobs();
    stopJobs = poll(loadJobs, JOB_IDLE_MS, (error) => status.replaceChildren(errorNotice(error)));
  }

  const headings = (names) => h("thead", {}, h("tr", {}, names.map((t) => h("th", {}, t))));
  fill(
    root,
    h("div", { class: "row spread" }, h("h1", {}, "Pricing rules"),
      h("div", { class: "row" }, h("label", { class: "inline" }, showInactive, "show deactivated"),
        h("button", { type: "button", class: "primary", "data-testid": "new-rule", onclick: () => open() }, "New rule"))),
    status,
    slot,
    h("div", { class: "table-wrap" }, h("table", { "data-testid": "rules" },
      headings(["priority", "description", "feed", "stone type", "criteria", "cost", "pricing", "rating", ""]), rulesBody)),
    h("h2", { style: { marginTop: "1.4rem" } }, "Repricing jobs"),
    h("div", { class: "table-wrap" }, h("table", { "data-testid": "jobs" },
      headings(["job", "status", "reason", "progress", "changed", "price change", "created", ""]), jobsBody)),
  );
  await loadRules();
  watchJobs();
  return () => stopJobs();
}
