// The web inbox: state, routing (the location's hash holds the open message's ID, so
// the browser's Back closes it), live updates from the event stream, the actions and
// the keyboard. No framework: the list and the message view are rebuilt from the API.

import * as api from "./api.js";
import { $, el } from "./dom.js";
import { render } from "./list.js";
import * as view from "./message.js";

const PAGE = 50;
const state = { start: 0, query: "", mailbox: "", selected: new Set(), page: null, open: null, tab: "html" };
let events = null;
let refreshTimer = 0;

function status(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

async function attempt(what, action) {
  try {
    const result = await action();
    status("");
    return result;
  } catch (err) {
    status(`${what}: ${err.message}`, true);
    return undefined;
  }
}

// -- the list -----------------------------------------------------------------------

async function refresh() {
  const page = await attempt("Could not load the messages", () => api.list({
    start: state.start, limit: PAGE, query: state.query, mailbox: state.mailbox,
  }));
  if (!page) return;
  if (page.messages.length === 0 && state.start > 0 && page.messages_count > 0) {
    state.start = Math.max(0, Math.floor((page.messages_count - 1) / PAGE) * PAGE);
    return refresh();
  }
  state.page = page;
  const shown = new Set(page.messages.map((m) => m.ID));
  for (const id of state.selected) if (!shown.has(id)) state.selected.delete(id);
  render(page, state);
  selectionChanged();
  document.title = page.unread ? `(${page.unread}) mailwire inbox` : "mailwire inbox";
  loadMailboxes();
}

// At most one refresh per 150 ms however fast mail comes (a burst of thousands
// costs a handful of list requests, and the list keeps up while it lasts).
function refreshSoon() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = 0; refresh(); }, 150);
}

async function loadMailboxes() {
  const found = await attempt("Could not load the mailboxes", api.mailboxes);
  if (!found) return;
  const select = $("mailbox");
  const options = [el("option", { value: "", text: "All mailboxes" })];
  const names = new Set();
  for (const box of found.mailboxes) {
    names.add(box.Mailbox);
    options.push(el("option", { value: box.Mailbox, text: `${box.Mailbox} (${box.Total}${box.Unread ? `, ${box.Unread} unread` : ""})` }));
  }
  if (state.mailbox && !names.has(state.mailbox)) options.push(el("option", { value: state.mailbox, text: `${state.mailbox} (0)` }));
  select.replaceChildren(...options);
  select.value = state.mailbox;
}

function selectionChanged() {
  const none = state.selected.size === 0;
  for (const id of ["mark-read", "mark-unread", "delete-selected"]) $(id).disabled = none;
  const count = state.page ? state.page.messages.length : 0;
  $("select-all").checked = count > 0 && state.selected.size === count;
  $("select-all").indeterminate = !none && state.selected.size < count;
}

function listen() {
  if (events) events.close();
  events = new EventSource(api.url("/api/v1/events", { mailbox: state.mailbox }));
  events.addEventListener("new", refreshSoon);
  events.addEventListener("open", () => { $("live").classList.add("on"); $("live").title = "Live: new mail shows as it arrives"; refreshSoon(); });
  events.addEventListener("error", () => { $("live").classList.remove("on"); $("live").title = "Reconnecting to the server\u2026"; });
}

// -- the message view ---------------------------------------------------------------

function showTab(name) {
  state.tab = name;
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    const on = tab.dataset.panel === name;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $(`panel-${tab.dataset.panel}`).hidden = !on;
  }
  const id = state.open && state.open.ID;
  if (!id) return;
  if (name === "headers" && !$("headers").childElementCount) attempt("Could not load the headers", () => view.loadHeaders(id));
  if (name === "raw" && !$("raw").textContent) attempt("Could not load the source", () => view.loadRaw(id));
}

async function open(id) {
  const found = await attempt("Could not open the message", () => api.message(id));
  if (!found) { location.hash = ""; return; }
  state.open = found;
  view.show(found);
  $("list-view").hidden = true;
  $("message-view").hidden = false;
  showTab(found.HTML ? "html" : "text");
  $("back").focus();
  const summary = state.page && state.page.messages.find((m) => m.ID === id);
  if (!summary || !summary.Read) {
    await attempt("Could not mark it read", () => api.markRead([id], true));
    refreshSoon();
  }
  setReadButton(true);
}

function setReadButton(read) {
  $("toggle-read").textContent = read ? "Mark unread" : "Mark read";
  $("toggle-read").dataset.read = String(read);
}

function close() {
  state.open = null;
  $("html-frame").src = "about:blank";
  $("message-view").hidden = true;
  $("list-view").hidden = false;
  const row = document.querySelector(`.messages li[data-id="${CSS.escape(lastOpened)}"] a`);
  if (row) row.focus();
}

let lastOpened = "";
function route() {
  const id = decodeURIComponent(location.hash.replace(/^#/, ""));
  if (id) { lastOpened = id; open(id); } else close();
}

// -- dialogs ------------------------------------------------------------------------

function confirmIt(text, yes) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-yes").textContent = yes;
  return new Promise((resolve) => {
    const done = (answer) => { cleanup(); dialog.close(); resolve(answer); };
    const submit = (event) => { event.preventDefault(); done(true); };
    const cancel = () => done(false);
    const cancelled = (event) => { event.preventDefault(); done(false); };
    function cleanup() {
      $("confirm-form").removeEventListener("submit", submit);
      $("confirm-no").removeEventListener("click", cancel);
      dialog.removeEventListener("cancel", cancelled);
    }
    $("confirm-form").addEventListener("submit", submit);
    $("confirm-no").addEventListener("click", cancel);
    dialog.addEventListener("cancel", cancelled);
    dialog.showModal();
    $("confirm-no").focus();
  });
}

function openRelease() {
  if (!state.open) return;
  $("release-to").value = (state.open.To || []).map((a) => a && a.Address).filter(Boolean).join(", ");
  $("release-error").textContent = "";
  $("release-dialog").showModal();
  $("release-to").focus();
}

async function sendRelease(event) {
  event.preventDefault();
  const to = $("release-to").value.split(/[,;\s]+/).map((a) => a.trim()).filter(Boolean);
  if (!to.length) { $("release-error").textContent = "Give at least one address."; return; }
  $("release-send").disabled = true;
  try {
    await api.release(state.open.ID, to);
    $("release-dialog").close();
    status(`Released to ${to.join(", ")}.`);
  } catch (err) {
    $("release-error").textContent = err.message;
  } finally {
    $("release-send").disabled = false;
  }
}

// -- actions ------------------------------------------------------------------------

async function bulk(action) {
  const ids = [...state.selected];
  if (!ids.length) return;
  await attempt("Could not change the messages", () => action(ids));
  if (action === api.remove) state.selected.clear();
  refresh();
}

async function deleteAll() {
  const what = state.query
    ? `Delete every message matching \u201c${state.query}\u201d${state.mailbox ? ` in ${state.mailbox}` : ""}?`
    : state.mailbox ? `Delete every message in ${state.mailbox}?` : "Delete every message?";
  if (!(await confirmIt(what, "Delete"))) return;
  await attempt("Could not delete", () => state.query ? api.removeMatching(state.query, state.mailbox) : api.removeAll(state.mailbox));
  state.selected.clear();
  state.start = 0;
  refresh();
}

async function deleteOpen() {
  if (!state.open) return;
  const id = state.open.ID;
  if (await attempt("Could not delete", () => api.remove([id])) === undefined) return;
  location.hash = "";
  refresh();
}

async function toggleRead() {
  if (!state.open) return;
  const read = $("toggle-read").dataset.read !== "true";
  if (await attempt("Could not mark it", () => api.markRead([state.open.ID], read)) === undefined) return;
  setReadButton(read);
  refreshSoon();
}

function search(event) {
  event.preventDefault();
  state.query = $("query").value.trim();
  state.start = 0;
  state.selected.clear();
  $("clear-search").hidden = !state.query;
  if (location.hash) location.hash = "";
  refresh();
}

function wire() {
  $("search").addEventListener("submit", search);
  $("clear-search").addEventListener("click", (e) => { $("query").value = ""; search(e); });
  $("mailbox").addEventListener("change", () => {
    state.mailbox = $("mailbox").value;
    state.start = 0;
    state.selected.clear();
    listen();
    refresh();
  });
  $("messages").addEventListener("change", (event) => {
    const box = event.target;
    if (!box.classList.contains("select")) return;
    if (box.checked) state.selected.add(box.dataset.id); else state.selected.delete(box.dataset.id);
    selectionChanged();
  });
  $("select-all").addEventListener("change", () => {
    const on = $("select-all").checked;
    for (const box of document.querySelectorAll("#messages input.select")) {
      box.checked = on;
      if (on) state.selected.add(box.dataset.id); else state.selected.delete(box.dataset.id);
    }
    selectionChanged();
  });
  $("mark-read").addEventListener("click", () => bulk((ids) => api.markRead(ids, true)));
  $("mark-unread").addEventListener("click", () => bulk((ids) => api.markRead(ids, false)));
  $("delete-selected").addEventListener("click", () => bulk(api.remove));
  $("delete-all").addEventListener("click", deleteAll);
  $("prev").addEventListener("click", () => { state.start = Math.max(0, state.start - PAGE); refresh(); });
  $("next").addEventListener("click", () => { state.start += PAGE; refresh(); });
  $("back").addEventListener("click", () => { location.hash = ""; });
  $("home").addEventListener("click", (e) => { e.preventDefault(); location.hash = ""; });
  $("toggle-read").addEventListener("click", toggleRead);
  $("delete-one").addEventListener("click", deleteOpen);
  $("release").addEventListener("click", openRelease);
  $("release-form").addEventListener("submit", sendRelease);
  $("release-cancel").addEventListener("click", () => $("release-dialog").close());
  $("remote").addEventListener("change", () => {
    if (state.open) $("html-frame").src = view.frameSource(state.open.ID, $("remote").checked);
  });
  for (const tab of document.querySelectorAll('[role="tab"]')) tab.addEventListener("click", () => showTab(tab.dataset.panel));
  $("message-view").querySelector(".tabs").addEventListener("keydown", (event) => {
    if (event.key !== "ArrowRight" && event.key !== "ArrowLeft") return;
    const tabs = [...document.querySelectorAll('[role="tab"]')];
    const at = tabs.findIndex((t) => t.dataset.panel === state.tab);
    const next = tabs[(at + (event.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
    showTab(next.dataset.panel);
    next.focus();
  });
  document.addEventListener("keydown", keys);
  window.addEventListener("hashchange", route);
}

function keys(event) {
  const typing = event.target.closest("input, select, textarea, dialog");
  if (event.key === "Escape" && state.open && !typing) { location.hash = ""; return; }
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "/") { event.preventDefault(); $("query").focus(); return; }
  if (state.open) return;
  const rows = [...document.querySelectorAll("#messages a.row")];
  const at = rows.indexOf(document.activeElement);
  if (event.key === "j" || event.key === "ArrowDown") { event.preventDefault(); (rows[at + 1] || rows[0])?.focus(); }
  else if (event.key === "k" || event.key === "ArrowUp") { event.preventDefault(); (rows[at - 1] || rows[0])?.focus(); }
  else if (event.key === "n" && !$("next").disabled) $("next").click();
  else if (event.key === "p" && !$("prev").disabled) $("prev").click();
}

// Release is offered where the server has a relay to release to (serve --release-to).
async function configure() {
  const config = await attempt("Could not read the configuration", api.webui);
  const relay = config && config.MessageRelay;
  $("release").hidden = !(relay && relay.Enabled);
  if (relay && relay.Enabled) {
    $("release-server").textContent = relay.SMTPServer;
    $("release").title = `Send it on through ${relay.SMTPServer}`;
  }
}

wire();
configure();
listen();
refresh();
route();
