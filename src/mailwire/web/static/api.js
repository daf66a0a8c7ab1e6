// The HTTP API the page is a client of: Mailpit's API v1 and mailwire's additions.
// Every call answers parsed JSON (or text) or throws an Error carrying the server's message.

async function check(response) {
  if (response.ok) return response;
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && typeof body.Error === "string") message = body.Error;
  } catch (_) { /* not JSON: keep the status line */ }
  throw new Error(message);
}

export function url(path, params = {}) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `${path}?${text}` : path;
}

export async function getJSON(path, params) {
  const response = await check(await fetch(url(path, params), { headers: { Accept: "application/json" } }));
  return response.json();
}

export async function send(method, path, params, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await check(await fetch(url(path, params), init));
  return response.text();
}

// The first `limit` octets of a text resource (a 50 MB raw message is not read whole),
// and whether there was more.
export async function getTextHead(path, limit) {
  const response = await check(await fetch(path));
  const reader = response.body.getReader();
  const chunks = [];
  let size = 0;
  let more = false;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.length;
    if (size >= limit) { more = true; await reader.cancel(); break; }
  }
  const all = new Uint8Array(Math.min(size, limit));
  let at = 0;
  for (const chunk of chunks) {
    const take = Math.min(chunk.length, all.length - at);
    all.set(chunk.subarray(0, take), at);
    at += take;
    if (at >= all.length) break;
  }
  return { text: new TextDecoder("utf-8", { fatal: false }).decode(all), more };
}

export const list = (params) => getJSON(params.query ? "/api/v1/search" : "/api/v1/messages", params);
export const message = (id) => getJSON(`/api/v1/message/${encodeURIComponent(id)}`);
export const headers = (id) => getJSON(`/api/v1/message/${encodeURIComponent(id)}/headers`);
export const mailboxes = () => getJSON("/api/v1/mailboxes");
export const webui = () => getJSON("/api/v1/webui");
export const markRead = (ids, read) => send("PUT", "/api/v1/messages", {}, { IDs: ids, Read: read });
export const remove = (ids) => send("DELETE", "/api/v1/messages", {}, { IDs: ids });
export const removeAll = (mailbox) => send("DELETE", "/api/v1/messages", { mailbox });
export const removeMatching = (query, mailbox) => send("DELETE", "/api/v1/search", { query, mailbox });
export const release = (id, to) => send("POST", `/api/v1/message/${encodeURIComponent(id)}/release`, {}, { To: to });
