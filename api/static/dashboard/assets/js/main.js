// The dashboard's entry: sign-in gate, navigation, and one page module per route.
// A page module exports `title` and `render(root, context)`, which may return a cleanup function
// (stopping its polling) that runs when the page is left.

import { forgetKey, get, openapi, storedKey } from "./api.js";
import { errorNotice, fill, h } from "./dom.js";
import { match, navigate, parseHash } from "./router.js";
import * as catalogue from "./pages/catalogue.js";
import * as deadLetters from "./pages/dead-letters.js";
import * as heatmap from "./pages/heatmap.js";
import * as overview from "./pages/overview.js";
import * as pricing from "./pages/pricing.js";
import * as runDetail from "./pages/run-detail.js";
import * as runs from "./pages/runs.js";
import * as signin from "./pages/signin.js";

const ROUTES = [
  ["/overview", overview],
  ["/runs", runs],
  ["/runs/:id", runDetail],
  ["/heatmap", heatmap],
  ["/catalogue", catalogue],
  ["/pricing", pricing],
  ["/dead-letters", deadLetters],
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const signOutButton = document.getElementById("sign-out");

let session = null; // {client, scopes, admin}
let cleanup = null;
let generation = 0; // a render that finishes after the user moved on is cleaned up at once

function leavePage() {
  generation += 1;
  if (typeof cleanup === "function") cleanup();
  cleanup = null;
}

function showSignedIn(signedIn) {
  document.body.classList.toggle("signed-out", !signedIn);
  nav.hidden = !signedIn;
  who.hidden = !signedIn;
  signOutButton.hidden = !signedIn;
  if (signedIn) who.textContent = `${session.client} · ${session.scopes.join(", ")}`;
}

function showSignIn(message) {
  leavePage();
  session = null;
  showSignedIn(false);
  document.title = "Sign in · Diamond Opus";
  cleanup = signin.render(main, { message, onSignedIn: start });
}

async function render() {
  leavePage();
  const { path, query } = parseHash(window.location.hash);
  const found = match(ROUTES, path);
  if (!found) {
    navigate("/overview");
    return;
  }
  const page = found.page;
  for (const link of nav.querySelectorAll("a[data-page]")) {
    const here = path.startsWith(`/${link.dataset.page}`);
    link.classList.toggle("active", here);
    // Screen readers announce the current page; the colour alone says it only to the eye.
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${page.title} · Diamond Opus`;
  const mine = generation;
  const root = fill(main, h("div", { "data-page": page.title })).firstChild;
  try {
    const done = await page.render(root, { params: found.params, query, session });
    if (mine === generation) cleanup = done;
    else if (typeof done === "function") done();
  } catch (error) {
    if (mine === generation) fill(root, errorNotice(error));
  }
  main.focus({ preventScroll: true });
}

/** Check the stored key (whoami) and open the requested page, or ask for a key. */
async function start() {
  if (!storedKey()) {
    showSignIn();
    return;
  }
  try {
    const { data } = await get("/whoami", undefined, { key: storedKey() });
    session = { ...data, admin: data.scopes.includes("admin") };
  } catch (error) {
    if (error.status === 401) {
      forgetKey();
      showSignIn(error);
    } else {
      // The server is down or restarting: the key was not refused, so it is kept for another try.
      leavePage();
      session = null;
      showSignedIn(false);
      fill(main, h("div", { class: "panel signin stack" }, errorNotice(error),
        h("button", { type: "button", class: "primary", "data-testid": "try-again", onclick: start }, "Try again")));
    }
    return;
  }
  showSignedIn(true);
  // The catalogue and pricing forms are built from the API's description: fetch it once, early,
  // so opening those pages costs one round trip only (a failure is reported where it is used).
  openapi().catch(() => {});
  await render();
}

window.addEventListener("hashchange", () => {
  if (session) render();
});
window.addEventListener("opus:unauthorized", (event) => {
  forgetKey();
  showSignIn(event.detail);
});
signOutButton.addEventListener("click", () => {
  forgetKey();
  showSignIn();
});

start();
