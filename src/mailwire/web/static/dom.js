// Building the page's elements. Message data goes in as text only (textContent and
// attributes set one by one), never as markup: a subject holding "<img onerror=...>"
// shows those characters.

export function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

export const $ = (id) => document.getElementById(id);

export function address(a) {
  if (!a) return "";
  return a.Name ? `${a.Name} <${a.Address}>` : a.Address || "";
}

export function addresses(list) {
  return (list || []).map(address).filter(Boolean).join(", ");
}

export function shortAddress(a) {
  return a ? a.Name || a.Address || "" : "";
}

const KB = 1024;
export function size(octets) {
  if (octets < KB) return `${octets} B`;
  if (octets < KB * KB) return `${(octets / KB).toFixed(octets < 10 * KB ? 1 : 0)} kB`;
  if (octets < KB * KB * KB) return `${(octets / KB / KB).toFixed(1)} MB`;
  return `${(octets / KB / KB / KB).toFixed(1)} GB`;
}

const timeOnly = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayOnly = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });
const full = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export function when(text, long = false) {
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) return "";
  if (long) return full.format(date);
  const now = new Date();
  return date.toDateString() === now.toDateString() ? timeOnly.format(date) : dayOnly.format(date);
}

export function fullDate(text) {
  return when(text, true);
}
