// The API client: every call sends the session's key as X-API-Key; every failure becomes an
// ApiError carrying the API's error envelope {"error": {"code", "message", "details"}}.

const KEY_STORAGE = "opus.apiKey";
export const API_ROOT = "/api/v2";
/** The feed variants the API accepts (its OpenAPI `FeedName`). */
export const FEEDS = ["nivoda-natural", "nivoda-labgrown"];

export class ApiError extends Error {
  constructor(status, code, message, details = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export const storedKey = () => sessionStorage.getItem(KEY_STORAGE);
export const storeKey = (key) => sessionStorage.setItem(KEY_STORAGE, key);
export const forgetKey = () => sessionStorage.removeItem(KEY_STORAGE);

/** `{a: 1, b: [x, y], c: ""}` -> `a=1&b=x&b=y` (empty values are left out). */
export function queryString(params = {}) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item !== undefined && item !== null && item !== "") search.append(name, String(item));
    }
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

async function failure(response) {
  let envelope = null;
  try {
    envelope = (await response.json()).error;
  } catch {
    // Not JSON (a proxy's page, say): the status line is all there is to report.
  }
  const code = envelope?.code ?? `http_${response.status}`;
  const message = envelope?.message ?? `${response.status} ${response.statusText || "request failed"}`;
  return new ApiError(response.status, code, message, envelope?.details ?? null);
}

/**
 * Call the API. A 401 also tells the app (event `opus:unauthorized`) so it can ask for a key again.
 * `key` overrides the stored key (the sign-in page checks a key before storing it).
 */
export async function request(method, path, { query, body, key, signal } = {}) {
  const headers = { Accept: "application/json" };
  const apiKey = key ?? storedKey();
  if (apiKey) headers["X-API-Key"] = apiKey;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(`${API_ROOT}${path}${queryString(query)}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network_error", "The server cannot be reached. Is `opus run` still running?");
  }
  if (!response.ok) {
    const error = await failure(response);
    if (response.status === 401 && key === undefined) {
      window.dispatchEvent(new CustomEvent("opus:unauthorized", { detail: error }));
    }
    throw error;
  }
  return response.status === 204 ? null : response.json();
}

export const get = (path, query, options = {}) => request("GET", path, { ...options, query });
export const post = (path, body, query) => request("POST", path, { body, query });
export const put = (path, body, query) => request("PUT", path, { body, query });
export const del = (path, query) => request("DELETE", path, { query });

let schema = null;

/** The API's OpenAPI document (public), fetched once: forms take their choices from it. */
export function openapi() {
  schema ??= fetch(`${API_ROOT}/openapi.json`)
    .then((response) => {
      if (!response.ok) throw new ApiError(response.status, "openapi_unavailable", "The API description is unavailable");
      return response.json();
    })
    .catch((error) => {
      schema = null; // try again next time
      throw error;
    });
  return schema;
}
