// The message list: one row per MessageSummary, newest first, with a checkbox for the
// bulk actions and a link that opens the message (Enter on a focused row opens it too).

import { $, el, addresses, shortAddress, size, when, fullDate } from "./dom.js";

export function row(summary, selected) {
  const from = shortAddress(summary.From) || "(no sender)";
  const to = addresses(summary.To) || "(no recipients)";
  const check = el("input", { type: "checkbox", class: "select", "aria-label": `Select: ${summary.Subject || "(no subject)"}` });
  check.checked = selected.has(summary.ID);
  check.dataset.id = summary.ID;
  const link = el("a", { class: "row", href: `#${encodeURIComponent(summary.ID)}`, "data-id": summary.ID }, [
    el("span", { class: "who" }, [
      el("span", { class: "from", text: from, title: summary.From ? summary.From.Address : "" }),
      el("span", { class: "to", text: `to ${to}` }),
    ]),
    el("span", { class: "subj" }, [
      summary.Attachments > 0 ? el("span", { class: "clip", title: `${summary.Attachments} attachment(s)`, "aria-label": "has attachments", role: "img" }) : null,
      el("span", { class: "text", text: summary.Subject || "(no subject)" }),
      summary.Snippet ? el("span", { class: "snippet", text: summary.Snippet }) : null,
    ]),
    el("time", { class: "date", datetime: summary.Created, title: fullDate(summary.Created), text: when(summary.Created) }),
    el("span", { class: "size", text: size(summary.Size) }),
  ]);
  const label = el("label", { class: "check" }, [check]);
  const item = el("li", { class: summary.Read ? "read" : "unread", "data-id": summary.ID }, [label, link]);
  item.setAttribute("aria-label", `${summary.Read ? "" : "Unread. "}From ${from}: ${summary.Subject || "(no subject)"}`);
  return item;
}

let shown = "";

// The rows are rebuilt only when what they show changed (an event that brought
// nothing new leaves them, and the focus, alone); the focused row keeps the focus.
export function render(page, state) {
  const key = JSON.stringify([page.start, page.messages.map((s) => [s.ID, s.Read])]);
  if (key !== shown) {
    shown = key;
    const active = document.activeElement;
    const focused = active && active.closest("#messages li");
    const part = focused && active.matches("input") ? "input.select" : "a.row";
    const items = page.messages.map((s) => row(s, state.selected));
    $("messages").replaceChildren(...items);
    const again = focused && items.find((item) => item.dataset.id === focused.dataset.id);
    if (again) again.querySelector(part).focus();
  }
  $("empty").hidden = page.messages.length > 0;
  const first = page.messages.length ? page.start + 1 : 0;
  const last = page.start + page.messages.length;
  const matched = page.messages_count;
  const what = state.query ? "matching" : "messages";
  $("counts").textContent = matched
    ? `${first}\u2013${last} of ${matched} ${what} \u00b7 ${page.messages_unread} unread`
    : (state.query ? "nothing matches" : "no messages");
  $("prev").disabled = page.start <= 0;
  $("next").disabled = last >= matched;
  $("delete-all").textContent = state.query ? "Delete matching" : (state.mailbox ? "Delete mailbox" : "Delete all");
  $("delete-all").disabled = matched === 0;
}
