// Dead letters (messages that kept failing, with their reasons; for admins, replay or dismissal with
// a note) and the recorded errors (unmappable items, failed pages...) with filters.

import { FEEDS, get, post } from "../api.js";
import { badge, busy, choice, confirmAction, errorNotice, fill, fmt, h, notice, when } from "../dom.js";

export const title = "Dead letters & errors";
const LIST_LIMIT = 200;
const NOTE_LIMIT = 500; // the API's bound on a dismissal note
const SOURCES = ["scheduler", "worker", "consolidator", "fanin", "api", "bus"];

/** A full page may not be all there is: say so rather than pass it off as the whole list. */
const truncated = (rows, what) =>
  rows.length >= LIST_LIMIT ? notice("info", `Showing the newest ${fmt.int(LIST_LIMIT)} ${what}; there may be more: narrow the filter.`) : "";

const json = (value) => h("details", {}, h("summary", { class: "small" }, "show"), h("pre", { class: "body" }, JSON.stringify(value, null, 2)));

function deadLetters(session) {
  const status = h("div"); // the list's own failure, cleared when it loads again
  const outcome = h("div"); // what a replay or a dismissal did
  const tbody = h("tbody");
  const form = h("form", { class: "filters", onchange: () => load(), onsubmit: (event) => { event.preventDefault(); load(); } },
    h("label", {}, "queue", h("input", { name: "queue", placeholder: "any queue" })),
    h("label", { class: "inline" }, h("input", { type: "checkbox", name: "include_replayed" }), "include resolved"));

  function replayButton(letter) {
    const button = h("button", { type: "button", class: "small", "data-testid": "replay", onclick: async () => {
      if (!(await confirmAction("Replay dead letter", `Send message ${letter.message_id} back to ${letter.queue} under a new message id?`, "Replay", false))) return;
      await busy(button, outcome, async () => {
        const { data } = await post(`/dead-letters/${letter.id}/replay`);
        outcome.replaceChildren(notice("ok", `Replayed as ${data.replay_message_id}.`));
        await load();
      });
    } }, "Replay");
    return button;
  }

  /** Dismiss asks for the note in place, beside the letter it resolves. */
  function dismissButton(letter) {
    const button = h("button", { type: "button", class: "small", "data-testid": "dismiss", onclick: () => {
      const note = h("input", { name: "note", required: true, maxlength: NOTE_LIMIT, placeholder: "why no replay is needed" });
      const submit = h("button", { type: "submit", class: "small primary" }, "Dismiss");
      const form = h("form", { class: "row", "data-testid": "dismiss-form", onsubmit: async (event) => {
        event.preventDefault();
        await busy(submit, outcome, async () => {
          const { data } = await post(`/dead-letters/${letter.id}/dismiss`, { note: note.value });
          outcome.replaceChildren(notice("ok", `Dismissed dead letter ${data.id}: ${data.dismissal_note}`));
          await load();
        });
      } }, note, submit, h("button", { type: "button", class: "small", onclick: () => form.replaceWith(actions(letter)) }, "Cancel"));
      button.parentElement.replaceWith(form);
      note.focus();
    } }, "Dismiss");
    return button;
  }

  const actions = (letter) => h("span", { class: "row" }, replayButton(letter), dismissButton(letter));

  function resolution(letter) {
    if (letter.replayed_at) {
      return h("span", { class: "small" }, badge("completed"), " replayed ", when(letter.replayed_at, { relative: true }), " as ", h("span", { class: "mono" }, letter.replay_message_id));
    }
    if (letter.dismissed_at) {
      return h("span", { class: "small" }, badge("dismissed"), " ", when(letter.dismissed_at, { relative: true }), ": ", h("span", { "data-testid": "dismissal-note" }, letter.dismissal_note));
    }
    return session.admin ? actions(letter) : null;
  }

  async function load() {
    const values = Object.fromEntries(new FormData(form));
    try {
      const { data } = await get("/dead-letters", { queue: values.queue?.trim(), include_replayed: values.include_replayed ? "true" : undefined, limit: LIST_LIMIT });
      status.replaceChildren(truncated(data, "dead letters"));
      fill(tbody, data.length ? null : h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No dead letters.")), data.map((letter) =>
        h("tr", { "data-letter": letter.id, "data-message": letter.message_id },
          h("td", { class: "num" }, letter.id),
          h("td", {}, letter.queue),
          h("td", { class: "mono small" }, letter.message_id),
          h("td", {}, badge("failed"), " ", h("strong", {}, letter.reason)),
          h("td", { class: "error-text" }, letter.description ?? ""),
          h("td", { class: "num" }, letter.delivery_count),
          h("td", { class: "nowrap" }, when(letter.dead_lettered_at, { relative: true })),
          h("td", {}, json(letter.body)),
          h("td", { "data-testid": "replay-state" }, resolution(letter)),
        )));
    } catch (error) {
      tbody.replaceChildren(); // rows of an earlier filter are not this filter's answer
      status.replaceChildren(errorNotice(error));
    }
  }
  load();
  return h("section", { class: "panel" }, h("h2", {}, "Dead letters"), form, outcome, status,
    h("div", { class: "table-wrap" }, h("table", { "data-testid": "dead-letters" },
      h("thead", {}, h("tr", {}, ["id", "queue", "message", "reason", "description", "deliveries", "dead-lettered", "body", ""].map((t) => h("th", {}, t)))), tbody)));
}

function errorRecords() {
  const status = h("div");
  const tbody = h("tbody");
  const form = h("form", { class: "filters", onchange: () => load(), onsubmit: (event) => { event.preventDefault(); load(); } },
    choice("source", "source", SOURCES, { any: "any" }),
    h("label", {}, "code", h("input", { name: "code", placeholder: "any code" })),
    choice("feed", "feed", FEEDS, { any: "any" }),
    h("label", {}, "run id", h("input", { name: "run_id", placeholder: "any run" })));

  async function load() {
    try {
      const { data } = await get("/errors", { ...Object.fromEntries(new FormData(form)), limit: LIST_LIMIT });
      status.replaceChildren(truncated(data, "errors"));
      fill(tbody, data.length ? null : h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No errors recorded.")), data.map((record) =>
        h("tr", { "data-error": record.id },
          h("td", { class: "nowrap" }, when(record.occurred_at, { relative: true })),
          h("td", {}, record.source),
          h("td", { class: "mono small" }, record.code),
          h("td", { class: "error-text" }, record.message),
          h("td", {}, record.run_id ? h("a", { href: `#/runs/${record.run_id}`, class: "mono" }, fmt.shortId(record.run_id)) : "–"),
          h("td", { class: "mono small" }, [record.partition_id, record.supplier_stone_id].filter(Boolean).join(" · ") || "–"),
          h("td", {}, record.feed ?? "–"),
          h("td", {}, Object.keys(record.context ?? {}).length ? json(record.context) : ""),
        )));
    } catch (error) {
      tbody.replaceChildren(); // rows of an earlier filter are not this filter's answer
      status.replaceChildren(errorNotice(error));
    }
  }
  load();
  return h("section", { class: "panel" }, h("h2", {}, "Recorded errors"), form, status,
    h("div", { class: "table-wrap" }, h("table", { "data-testid": "errors" },
      h("thead", {}, h("tr", {}, ["when", "source", "code", "message", "run", "partition / stone", "feed", "context"].map((t) => h("th", {}, t)))), tbody)));
}

export function render(root, { session }) {
  fill(root, h("h1", {}, "Dead letters & errors"), deadLetters(session), errorRecords());
}
