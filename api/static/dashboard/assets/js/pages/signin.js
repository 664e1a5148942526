// Sign-in: the API key is checked (GET /whoami) before it is kept in session storage.

import { get, storeKey } from "../api.js";
import { busy, errorNotice, fill, h } from "../dom.js";

export const title = "Sign in";

export function render(root, { message, onSignedIn }) {
  const problem = h("div", {}, message ? errorNotice(message) : null);
  const input = h("input", {
    type: "password",
    id: "api-key",
    name: "api-key",
    autocomplete: "off",
    placeholder: "opus_…",
    required: true,
  });
  const button = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    {
      class: "panel signin stack",
      onsubmit: async (event) => {
        event.preventDefault();
        const key = input.value.trim();
        const ok = await busy(button, problem, async () => {
          await get("/whoami", undefined, { key });
          return true;
        });
        if (ok) {
          storeKey(key);
          if (!window.location.hash || window.location.hash === "#/") window.location.hash = "#/overview";
          onSignedIn();
        }
      },
    },
    h("h1", {}, "Sign in"),
    h(
      "p",
      { class: "muted" },
      "Use an API key (",
      h("code", {}, "opus api-key create --name you --scope admin"),
      "). It is kept for this browser tab only.",
    ),
    problem,
    h("label", { for: "api-key" }, "API key", input),
    h("div", { class: "row" }, button),
  );
  fill(root, form);
  input.focus();
}
