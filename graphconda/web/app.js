// The dashboard: every byte of data comes from the GraphQL API at /graphql.
// Text is always inserted as text nodes, never as HTML; links to places outside the
// dashboard are made only from http(s) URLs (a package's `home` of `javascript:...`
// would otherwise run in our origin with the viewer's session when clicked).

async function gql(query, variables = {}) {
  const response = await fetch("/graphql", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors && body.errors.length) throw new Error(body.errors.map((e) => e.message).join("; "));
  return body.data;
}

// The URL if it is an absolute http: or https: URL, else null.
function webUrl(value) {
  try {
    const url = new URL(String(value));
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    // Only the dashboard's own routes and http(s) URLs may become links.
    if (key === "href" && !String(value).startsWith("#/") && !webUrl(value)) throw new Error(`unsafe link ${value}`);
    node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  return node;
}

function table(headings, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, ...headings.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c))))));
}

const main = () => document.getElementById("main");
function show(...nodes) { main().replaceChildren(...nodes); }
function fail(error) { show(el("p", { class: "error" }, error.message)); }
// A link for http(s) URLs; anything else (javascript:, data:, relative paths) is shown as text.
function externalLink(value) {
  const href = webUrl(value);
  return href ? el("a", { href, rel: "noopener noreferrer nofollow" }, value) : el("span", {}, value);
}
const channelLink = (name) => el("a", { href: `#/channel/${encodeURIComponent(name)}` }, name);
const packageLink = (channel, name) =>
  el("a", { href: `#/channel/${encodeURIComponent(channel)}/${encodeURIComponent(name)}` }, name);

async function channels() {
  const data = await gql(`{ channels(first: 100) { totalCount nodes { name description private mirrorMode url packageCount } } }`);
  const rows = data.channels.nodes.map((c) => [
    el("span", {}, channelLink(c.name), c.private ? el("span", { class: "badge" }, "private") : "",
      c.mirrorMode ? el("span", { class: "badge" }, c.mirrorMode.toLowerCase()) : ""),
    c.description, c.packageCount, el("code", {}, c.url),
  ]);
  show(el("h1", {}, `Channels (${data.channels.totalCount})`),
    rows.length ? table(["name", "description", "packages", "conda URL"], rows)
      : el("p", { class: "muted" }, "No channels yet. Create one with `graphconda channel create NAME` or the createChannel mutation."));
}

async function channel(name) {
  const data = await gql(`query($name: String!) { channel(name: $name) { name description url subdirs
      packages(first: 100) { totalCount nodes { name summary latestVersion license } } } }`, { name });
  const c = data.channel;
  if (!c) return show(el("p", { class: "error" }, "channel not found"));
  show(el("h1", {}, c.name), el("p", {}, c.description),
    el("p", {}, "Install with ", el("code", {}, `conda install -c ${c.url} <package>`)),
    el("p", { class: "muted" }, `subdirs: ${c.subdirs.join(", ")}`),
    table(["package", "latest", "summary", "license"],
      c.packages.nodes.map((p) => [packageLink(c.name, p.name), p.latestVersion, p.summary, p.license])));
}

async function pkg(channelName, name) {
  const data = await gql(`query($c: String!, $n: String!) { package(channel: $c, name: $n) { name summary description
      home license latestVersion channel { url } versions(first: 100) { nodes { filename subdir version build size uploadedAt depends } } } }`,
    { c: channelName, n: name });
  const p = data.package;
  if (!p) return show(el("p", { class: "error" }, "package not found"));
  show(el("h1", {}, `${p.name} ${p.latestVersion}`), el("p", {}, p.summary), el("p", { class: "muted" }, p.description),
    p.home ? el("p", { class: "home" }, externalLink(p.home)) : "",
    el("p", {}, el("code", {}, `conda install -c ${p.channel.url} ${p.name}`)),
    table(["file", "subdir", "version", "depends", "bytes", "uploaded"],
      p.versions.nodes.map((f) => [f.filename, f.subdir, f.version, f.depends.join(", "), f.size,
        new Date(f.uploadedAt).toLocaleString()])));
}

async function search(query) {
  const data = await gql(`query($q: String!) { search(query: $q, first: 50) { nodes { name summary latestVersion channel { name } } } }`,
    { q: query });
  show(el("h1", {}, `Search: ${query}`), table(["package", "channel", "latest", "summary"],
    data.search.nodes.map((p) => [packageLink(p.channel.name, p.name), p.channel.name, p.latestVersion, p.summary])));
}

async function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  try {
    if (parts[0] === "channel" && parts.length === 2) await channel(parts[1]);
    else if (parts[0] === "channel" && parts.length === 3) await pkg(parts[1], parts[2]);
    else if (parts[0] === "search" && parts[1]) await search(parts[1]);
    else await channels();
  } catch (error) { fail(error); }
}

async function header() {
  try {
    const data = await gql(`{ serverInfo { version storageBackend databaseBackend } viewer { username serverRole } }`);
    const s = data.serverInfo;
    document.getElementById("footer").textContent =
      `graphconda ${s.version} · storage: ${s.storageBackend} · database: ${s.databaseBackend}`;
    document.getElementById("viewer").textContent = data.viewer ? `signed in as ${data.viewer.username}` : "anonymous";
  } catch (error) { document.getElementById("footer").textContent = error.message; }
}

document.getElementById("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const query = document.getElementById("search").value.trim();
  if (query) location.hash = `#/search/${encodeURIComponent(query)}`;
});
window.addEventListener("hashchange", route);
header();
route();
