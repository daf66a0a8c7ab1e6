// One message: the envelope, the HTML part in a sandboxed frame (scripts never run; the
// view route sanitises it and serves it under a CSP), the text part, the headers, the
// raw source (the first megabyte; the whole file downloads as .eml) and the parts.

import * as api from "./api.js";
import { $, el, address, addresses, size, fullDate } from "./dom.js";

const RAW_SHOWN = 1 << 20;
const enc = encodeURIComponent;

function envelope(m) {
  const rows = [
    ["From", address(m.From)], ["To", addresses(m.To)], ["Cc", addresses(m.Cc)], ["Bcc", addresses(m.Bcc)],
    ["Reply-To", addresses(m.ReplyTo)], ["Date", fullDate(m.Date)], ["Size", size(m.Size)],
    ["User", m.Username],
  ];
  const nodes = [];
  for (const [name, value] of rows) {
    if (!value) continue;
    nodes.push(el("dt", { text: name }), el("dd", { text: value }));
  }
  $("envelope").replaceChildren(...nodes);
}

function part(m, p, kind) {
  const href = `/api/v1/message/${enc(m.ID)}/part/${enc(p.PartID)}`;
  const name = p.FileName || `part ${p.PartID}`;
  return el("li", {}, [
    el("a", { href, download: p.FileName || "", text: name }),
    el("span", { class: "meta", text: `part ${p.PartID} \u00b7 ${kind} \u00b7 ${p.ContentType || "application/octet-stream"} \u00b7 ${size(p.Size)}` }),
  ]);
}

// One line of the MIME tree, indented by its depth; a part links to its content.
function structureNode(m, n) {
  const label = n.Kind === "multipart" ? n.ContentType : `${n.ContentType}${n.FileName ? ` "${n.FileName}"` : ""}`;
  const what = n.Kind === "multipart" ? el("span", { text: label })
    : el("a", { href: `/api/v1/message/${enc(m.ID)}/part/${enc(n.PartID)}`, download: n.FileName || "", text: label });
  const meta = n.Kind === "multipart" ? "" : ` \u00b7 ${n.Kind} \u00b7 ${size(n.Size)}`;
  const line = el("li", {}, [
    el("span", { class: "meta", text: `${n.PartID || "message"} ` }), what, el("span", { class: "meta", text: meta }),
  ]);
  line.style.paddingLeft = `${1.5 * Math.min(n.Depth, 32)}em`; // through the CSSOM: the CSP allows no style attribute
  return line;
}

function parts(m) {
  const items = [];
  if (m.Text) items.push(el("li", {}, [el("span", { text: "Text body" }), el("span", { class: "meta", text: "text/plain" })]));
  if (m.HTML) items.push(el("li", {}, [el("span", { text: "HTML body" }), el("span", { class: "meta", text: "text/html" })]));
  for (const p of m.Inline || []) items.push(part(m, p, "inline"));
  for (const p of m.Attachments || []) items.push(part(m, p, "attachment"));
  $("parts").replaceChildren(...items);
  const images = (m.Inline || []).concat(m.Attachments || []).filter((p) => (p.ContentType || "").startsWith("image/"));
  $("inline-images").replaceChildren(...images.slice(0, 50).map((p) => el("img", {
    src: `/api/v1/message/${enc(m.ID)}/part/${enc(p.PartID)}`, alt: p.FileName || `inline image ${p.PartID}`, loading: "lazy",
  })));
  $("structure").replaceChildren(...(m.Structure || []).map((n) => structureNode(m, n)));
  const count = (m.Inline || []).length + (m.Attachments || []).length;
  $("tab-parts").textContent = count ? `Parts (${count})` : "Parts";
}

export function frameSource(id, remote) {
  return `/view/${enc(id)}.html?embed=1${remote ? "&remote=1" : ""}`;
}

export function show(m) {
  $("subject").textContent = m.Subject || "(no subject)";
  envelope(m);
  $("download").href = `/api/v1/message/${enc(m.ID)}/raw?dl=1`;
  $("download").setAttribute("download", `${m.ID}.eml`);
  $("text").textContent = m.Text || "(this message has no text part)";
  $("remote").checked = false;
  const frame = $("html-frame");
  frame.hidden = !m.HTML;
  $("no-html").hidden = !!m.HTML;
  $("remote").disabled = !m.HTML;
  frame.src = m.HTML ? frameSource(m.ID, false) : "about:blank";
  $("headers").replaceChildren();
  $("raw").textContent = "";
  parts(m);
}

export async function loadHeaders(id) {
  const found = await api.headers(id);
  const rows = [];
  for (const [name, values] of Object.entries(found)) {
    for (const value of values) rows.push(el("tr", {}, [el("th", { scope: "row", text: name }), el("td", { text: value })]));
  }
  $("headers").replaceChildren(...rows);
}

export async function loadRaw(id) {
  const { text, more } = await api.getTextHead(`/api/v1/message/${enc(id)}/raw`, RAW_SHOWN);
  $("raw").textContent = more ? `${text}\n\n[\u2026 the first ${size(RAW_SHOWN)} shown: download the .eml for the whole message]` : text;
}
