// Small DOM helpers shared by the pages: an element builder, formatting, notices, a confirmation
// dialog and a poller that stops when the page is left.

/** h("a", {href: "#/x", class: "y", onclick: f}, "text", child, [more]) -> element */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else if (name === "style" && typeof value === "object") Object.assign(element.style, value);
    else if (name in element && !name.startsWith("data") && name !== "list") element[name] = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's content. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

// --- formatting ----------------------------------------------------------------------------
const integer = new Intl.NumberFormat("en-US");
const dollars = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
// Every time shown is the browser's local time with its zone's name ("29 Nov 2026, 14:05:07 GMT+1",
// "… UTC"): a bare clock time would be read in the wrong zone by whoever compares it with a log.
const dateTime = new Intl.DateTimeFormat("en-GB", { dateStyle: "medium", timeStyle: "long" });

export const fmt = {
  int: (value) => (value === null || value === undefined ? "–" : integer.format(value)),
  /** Money arrives as a decimal string; it is only formatted, never computed with. */
  money: (text) => (text === null || text === undefined ? "–" : dollars.format(Number(text))),
  pct: (fraction) => (fraction === null || fraction === undefined ? "–" : `${Math.round(fraction * 1000) / 10}%`),
  date: (iso) => (iso ? dateTime.format(new Date(iso)) : "–"),
  /** The zone times are shown in ("GMT+1", "UTC"), as `date` names it. */
  zone: (at = new Date()) => dateTime.formatToParts(at).find((part) => part.type === "timeZoneName")?.value ?? "",
  /** A local calendar day as YYYY-MM-DD (days are counted in the zone times are shown in). */
  day: (at) => [at.getFullYear(), at.getMonth() + 1, at.getDate()].map((n) => String(n).padStart(2, "0")).join("-"),
  ago(iso) {
    if (!iso) return "–";
    const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
    if (seconds < 60) return `${Math.max(seconds, 0)} s ago`;
    if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
    return `${Math.round(seconds / 86400)} d ago`;
  },
  duration(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
    if (seconds < 59.95) return `${seconds.toFixed(1)} s`;
    // Rounded before it is split, so that 119.7 s reads "2 min 0 s", not "1 min 60 s".
    const whole = Math.round(seconds);
    if (whole < 3600) return `${Math.floor(whole / 60)} min ${whole % 60} s`;
    const minutes = Math.round(seconds / 60);
    if (minutes < 48 * 60) return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
    // Days past two; a reading beyond a century is nonsense to spell out (a stored 1e300 s lag).
    const days = Math.round(seconds / 86400);
    return days <= 36500 ? `${days.toLocaleString("en-US")} d` : "over 100 years";
  },
  shortId: (id) => String(id).slice(0, 8),
};

export const secondsBetween = (from, to) => (new Date(to ?? Date.now()) - new Date(from)) / 1000;

/**
 * A time as the page shows it: written out with its zone (`fmt.date`), or `relative` ("5 min ago")
 * with that full time on hover; `datetime` carries the exact instant.
 */
export function when(iso, { relative = false } = {}) {
  if (!iso) return "–";
  return h("time", { datetime: iso, title: relative ? fmt.date(iso) : null }, relative ? fmt.ago(iso) : fmt.date(iso));
}

// --- pieces -----------------------------------------------------------------------------------
/**
 * A labelled <select>: `options` are values or [value, text] pairs; `any` adds an empty first
 * option with that text (the filter left out).
 */
export function choice(name, label, options, { value = "", any = null } = {}) {
  const pairs = options.map((o) => (Array.isArray(o) ? o : [o, o]));
  if (any !== null) pairs.unshift(["", any]);
  return h("label", {}, label, h("select", { name }, pairs.map(([v, text]) => h("option", { value: v, selected: v === value }, text))));
}

export const badge = (state) => h("span", { class: `badge ${state}` }, state.replace("_", " "));

export function progress(done, total, { bad = false } = {}) {
  const fraction = total > 0 ? Math.min(1, done / total) : done > 0 ? 1 : 0;
  const classes = ["progress", fraction >= 1 ? "done" : "", bad ? "bad" : ""].join(" ");
  return h(
    "div",
    { class: classes, role: "progressbar", "aria-valuenow": Math.round(fraction * 100), "aria-valuemin": 0, "aria-valuemax": 100 },
    h("span", { style: { width: `${fraction * 100}%` } }),
  );
}

export function card(label, value, testid) {
  return h("div", { class: "card", "data-testid": testid }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
}

/** A notice; an ApiError shows its message, its code and the details it names. */
export function notice(kind, content) {
  if (content instanceof Error) return errorNotice(content);
  return h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, content);
}

export function errorNotice(error) {
  const details = Array.isArray(error.details) ? error.details : [];
  return h(
    "div",
    { class: "notice error", role: "alert", "data-testid": "error" },
    h("strong", {}, error.message),
    error.code ? h("span", { class: "code" }, ` (${error.status ? `${error.status} ` : ""}${error.code})`) : null,
    details.length
      ? h("ul", {}, details.map((d) => h("li", {}, d.parameter ? `${d.parameter}: ${d.message}` : JSON.stringify(d))))
      : null,
    error.status === 403 ? h("div", {}, "Your key does not have the scope this needs; sign in with an admin key.") : null,
  );
}

/** Ask before an action; resolves true when confirmed. */
export function confirmAction(title, message, confirmLabel = "Confirm", danger = true) {
  return new Promise((resolve) => {
    const dialog = h(
      "dialog",
      { "data-testid": "confirm" },
      h("h2", {}, title),
      h("p", {}, message),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", onclick: () => dialog.close("cancel") }, "Cancel"),
        h("button", { type: "button", class: danger ? "danger" : "primary", onclick: () => dialog.close("ok") }, confirmLabel),
      ),
    );
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "ok");
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/**
 * Call `task` now and then every `intervalMs` (or what `task` returns) after it finishes, until
 * stopped. A failing call is reported to `onError` and retried at the next tick.
 */
export function poll(task, intervalMs, onError = () => {}) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    let next = intervalMs;
    try {
      next = (await task()) ?? intervalMs;
    } catch (error) {
      if (!stopped) onError(error);
    }
    if (!stopped) timer = setTimeout(tick, next);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** Run an async action from a button: disabled while it runs, errors shown in `where`. */
export async function busy(button, where, action) {
  button.disabled = true;
  try {
    return await action();
  } catch (error) {
    if (where) where.replaceChildren(errorNotice(error));
    return undefined;
  } finally {
    button.disabled = false;
  }
}
