// Hash routing: "#/runs/<id>?x=1" -> the page registered for /runs/:id, with params and query.

export function parseHash(hash) {
  const [path, search = ""] = hash.replace(/^#/, "").split("?");
  return { path: path || "/", query: new URLSearchParams(search) };
}

/** Routes are [pattern, page] with patterns like "/runs/:id"; returns {page, params} or null. */
export function match(routes, path) {
  for (const [pattern, page] of routes) {
    const names = [];
    const regex = new RegExp(
      `^${pattern.replace(/:([a-z_]+)/g, (_, name) => {
        names.push(name);
        return "([^/]+)";
      })}$`,
    );
    const found = regex.exec(path);
    if (found) return { page, params: Object.fromEntries(names.map((name, i) => [name, decodeURIComponent(found[i + 1])])) };
  }
  return null;
}

export const navigate = (path) => {
  window.location.hash = `#${path}`;
};

/** Replace the hash's query without adding a history entry or re-rendering the page. */
export function replaceQuery(query) {
  const { path } = parseHash(window.location.hash);
  const search = new URLSearchParams(query).toString();
  history.replaceState(null, "", `#${path}${search ? `?${search}` : ""}`);
}
