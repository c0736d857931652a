// DOM helpers shared by every page. Text is always inserted as text nodes, never as HTML;
// links are made only to the dashboard's own routes (`#/...`), our own server paths
// (`/...`, e.g. /auth/...), or absolute http(s) URLs: a package's `home` of
// `javascript:...` would otherwise run in our origin with the viewer's session when clicked.

// The URL if it is an absolute http: or https: URL, else null.
export function webUrl(value) {
  try {
    const url = new URL(String(value));
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

const ownPath = (value) => /^\/(?!\/)/.test(String(value)) || String(value).startsWith("#/");

// el("a", {href: "#/x", class: "c"}, "text", childNode); `on*` function attributes become listeners.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (typeof value === "function") {
      node.addEventListener(key.replace(/^on/, "").toLowerCase(), value);
      continue;
    }
    if ((key === "href" || key === "action") && !ownPath(value) && !webUrl(value)) throw new Error(`unsafe link ${value}`);
    if (key === "src") throw new Error("no src attributes from data");
    node.setAttribute(key, value === true ? "" : value);
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false || child === "") continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// An SVG element (charts); same rules: attributes are set one by one, text is text.
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  append(node, children);
  return node;
}

export function table(headings, rows, attrs = {}) {
  return el("div", { class: "table-wrap" }, el("table", attrs,
    el("thead", {}, el("tr", {}, ...headings.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c)))))));
}

// A link for http(s) URLs; anything else (javascript:, data:, relative paths) is shown as text.
export function externalLink(value, text = value) {
  const href = webUrl(value);
  return href ? el("a", { href, rel: "noopener noreferrer nofollow" }, text) : el("span", {}, value);
}

// A dashboard route: route("channel", name) -> "#/channel/<name>", each part encoded.
export function route(...parts) {
  return "#/" + parts.map((p) => encodeURIComponent(p)).join("/");
}
export const link = (text, ...parts) => el("a", { href: route(...parts) }, text);
export const channelLink = (name) => link(name, "channel", name);
export const packageLink = (channel, name, text = name) => link(text, "channel", channel, name);

export function badge(text) { return el("span", { class: "badge" }, text); }

export function formatBytes(bytes) {
  const n = Number(bytes);
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = n / 1024, i = 0;
  while (value >= 1024 && i < units.length - 1) { value /= 1024; i += 1; }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[i]}`;
}

export function formatDate(value) {
  return value ? new Date(value).toLocaleString() : "—";
}

// A <code> block with a copy button (install snippets, new API key secrets).
export function copyable(text, label = "Copy") {
  const code = el("code", { class: "copy-text" }, text);
  const button = el("button", { type: "button", class: "small", "aria-label": `${label}: ${text}` }, label);
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      // Clipboard access needs a secure context; select the text so Ctrl+C works.
      const range = document.createRange();
      range.selectNodeContents(code);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      button.textContent = "Selected: press Ctrl+C";
    }
  });
  return el("div", { class: "copyable" }, code, button);
}

let fieldCounter = 0;
// A labelled form control: field("Description", el("input", {name: "description"})).
export function field(label, control, hint) {
  fieldCounter += 1;
  const id = control.id || `f${fieldCounter}`;
  control.id = id;
  const hintNode = hint ? el("small", { class: "muted", id: `${id}-hint` }, hint) : null;
  if (hintNode) control.setAttribute("aria-describedby", hintNode.id);
  const checkbox = control.type === "checkbox";
  return el("div", { class: checkbox ? "field check" : "field" },
    checkbox ? control : null, el("label", { for: id }, label), checkbox ? null : control, hintNode);
}

// A form whose errors are shown inside it, next to its controls: `handler(form)` may throw;
// its message (a GraphQL error or a typed error result) appears in the form's alert line.
export function form(attrs, children, submitLabel, handler) {
  const error = el("p", { class: "error", role: "alert" });
  const submit = el("button", { type: "submit" }, submitLabel);
  const node = el("form", attrs, ...children, el("div", { class: "actions" }, submit), error);
  node.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    submit.disabled = true;
    try {
      await handler(node);
    } catch (failure) {
      error.textContent = failure.message;
    } finally {
      submit.disabled = false;
    }
  });
  return node;
}

// A titled section; its class is the title's first word ("Packages (12)" -> section.packages).
export function section(title, ...children) {
  const kind = title.split(/\s/)[0].toLowerCase().replace(/[^a-z-]/g, "");
  return el("section", { "aria-label": title, class: kind }, el("h2", {}, title), ...children);
}

export function lines(value) {
  return String(value).split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
}

// node.replaceChildren(...) without the "null" text DOM makes of null: skipped parts are left out.
export function put(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false && c !== ""));
  return node;
}
