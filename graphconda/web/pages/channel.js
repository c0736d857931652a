// A channel: packages (paged, filtered), install snippets, subdirs, members, the mirror panel
// with "sync now", settings and schedules for its maintainers, and deletion for its owners.
import { gql, mutate, request } from "../lib/api.js";
import { badge, copyable, el, externalLink, field, form, formatBytes, formatDate, lines, packageLink, route, section, table, put } from "../lib/dom.js";
import { liveJob } from "../lib/live.js";
import { pageArgs, pager } from "../lib/paging.js";
import { navigate, render, withQuery } from "../lib/router.js";
import { isStaff, session } from "../lib/session.js";

const CHANNEL = gql`query Channel($name: String!, $first: Int, $after: String, $contains: String, $order: PackageOrder!) {
  channel(name: $name) {
    name description private mirrorMode url subdirs repodataUrls packageCount size createdAt updatedAt downloadCount
    viewerRole includelist excludelist proxylist
    publishing { bz2 currentRepodata shards }
    mirror { mode upstreamUrl ttl prune lastSyncAt lastSuccessAt filesMirrored bytesMirrored lastError
      lastJob { id kind status error progress { done total message } createdAt finishedAt } }
    members { role user { username displayName } }
    schedules { id kind intervalSeconds cron enabled }
    packages(first: $first, after: $after, nameContains: $contains, orderBy: $order) {
      totalCount pageInfo { hasNextPage endCursor }
      nodes { name summary latestVersion license updatedAt downloadCount } } } }`;

const SET_MEMBER = gql`mutation SetChannelMember($channel: String!, $username: String!, $role: Role!) {
  setChannelMember(channel: $channel, username: $username, role: $role) {
    __typename ... on Member { role } ... on Error { message } } }`;

const REMOVE_MEMBER = gql`mutation RemoveChannelMember($channel: String!, $username: String!) {
  removeChannelMember(channel: $channel, username: $username) {
    __typename ... on Channel { name } ... on Error { message } } }`;

const SYNC = gql`mutation SyncMirror($input: SyncMirrorInput!) { syncMirror(input: $input) {
  __typename ... on Job { id kind status error progress { done total message } createdAt finishedAt }
  ... on Error { message } } }`;

const UPDATE = gql`mutation UpdateChannel($input: UpdateChannelInput!) { updateChannel(input: $input) {
  __typename ... on Channel { name } ... on Error { message } } }`;

const SCHEDULE = gql`mutation SetSchedule($input: SetScheduleInput!) { setSchedule(input: $input) {
  __typename ... on Schedule { id } ... on Error { message } } }`;

const DELETE = gql`mutation DeleteChannel($name: String!) { deleteChannel(name: $name) {
  __typename ... on DeletedChannel { name } ... on Error { message } } }`;

const ROLES = ["MEMBER", "MAINTAINER", "OWNER"];
const ORDERS = { name: ["NAME", "name"], downloads: ["DOWNLOADS", "most downloaded"], updated: ["UPDATED", "last update"] };
const orderOf = (query) => ORDERS[query.get("sort")] ? query.get("sort") : "name";
const rank = (role) => (role ? ROLES.indexOf(role) + 1 : 0);

export default async function channel({ params, query, root, onLeave }) {
  const [{ viewer }, data] = await Promise.all([session(), request(CHANNEL,
    { name: params.channel, ...pageArgs(query), contains: query.get("q") || null, order: ORDERS[orderOf(query)][0] })]);
  const c = data.channel;
  if (!c) {
    put(root, el("h1", {}, params.channel),
      el("p", { class: "error", role: "alert" }, "Channel not found (or it is private and you may not see it)."),
      viewer ? null : el("p", { class: "muted" }, "Signing in may show it."));
    return;
  }
  const staff = isStaff(viewer);
  const maintainer = staff || rank(c.viewerRole) >= 2;
  const owner = staff || c.viewerRole === "OWNER";
  const refresh = () => render();

  put(root, 
    el("h1", {}, c.name),
    el("p", { class: "badges" }, c.private ? badge("private") : badge("public"),
      c.mirrorMode ? badge(c.mirrorMode.toLowerCase()) : null, c.viewerRole ? badge(`you: ${c.viewerRole.toLowerCase()}`) : null),
    c.description ? el("p", {}, c.description) : null,
    el("p", { class: "muted" }, `${c.packageCount} packages · ${formatBytes(c.size)} · ${c.downloadCount} downloads · updated ${formatDate(c.updatedAt)}`),
    install(c),
    packages(c, query),
    section("Subdirs", el("ul", { class: "subdirs" }, ...c.subdirs.map((s, i) =>
      el("li", {}, externalLink(c.repodataUrls[i], `${s}/repodata.json`))))),
    c.mirror ? mirror(c, maintainer, onLeave, refresh) : null,
    members(c, owner, refresh),
    maintainer ? el("p", {}, el("a", { href: `#/jobs?channel=${encodeURIComponent(c.name)}` }, "Job runs of this channel")) : null,
    maintainer ? settings(c, staff, refresh) : null,
    maintainer ? schedules(c, refresh) : null,
    owner ? deletion(c) : null,
  );
}

function install(c) {
  const url = c.private ? c.url.replace(/^(https?:\/\/[^/]+)\//, "$1/t/<API-KEY>/") : c.url;
  return section("Install",
    copyable(`conda install -c ${url} <package>`),
    copyable(`mamba install -c ${url} <package>`),
    copyable(`pixi add --channel ${url} <package>`),
    c.private ? el("p", { class: "muted" }, "A private channel: replace <API-KEY> with a key (",
      el("a", { href: "#/account" }, "create one on your account page"), "); pixi and rattler also accept the key as a bearer token.") : null);
}

function packages(c, query) {
  const input = el("input", { type: "search", name: "q", value: query.get("q") || "" });
  const sort = el("select", { name: "sort" }, ...Object.entries(ORDERS).map(([key, [, text]]) =>
    el("option", { value: key, selected: orderOf(query) === key }, text)));
  const filter = el("form", { class: "inline", role: "search", "aria-label": "Filter packages" },
    field("Package name contains", input), field("Sort by", sort), el("button", { type: "submit" }, "Show"));
  filter.addEventListener("submit", (event) => {
    event.preventDefault();
    navigate(withQuery({ q: input.value.trim(), sort: sort.value === "name" ? null : sort.value, after: null, from: null }));
  });
  const conn = c.packages;
  return section(`Packages (${conn.totalCount})`, filter,
    conn.nodes.length ? table(["package", "latest", "summary", "license", "downloads", "updated"],
      conn.nodes.map((p) => [packageLink(c.name, p.name), p.latestVersion, p.summary, p.license, String(p.downloadCount),
        formatDate(p.updatedAt)]),
      { class: "packages" })
      : el("p", { class: "muted" }, query.get("q") ? "No package matches." : "No packages yet."),
    pager(query, conn, "packages"));
}

function mirror(c, maintainer, onLeave, refresh) {
  const m = c.mirror;
  const facts = [
    ["Mode", m.mode.toLowerCase()],
    ["Upstream", externalLink(m.upstreamUrl)],
  ];
  if (m.mode === "PROXY") facts.push(["Index cached for", `${m.ttl} s`]);
  else {
    facts.push(["Last sync", formatDate(m.lastSyncAt)], ["Last success", formatDate(m.lastSuccessAt)],
      ["Files mirrored", `${m.filesMirrored} (${formatBytes(m.bytesMirrored)})`], ["Prune", m.prune ? "yes" : "no"]);
    if (m.lastError) facts.push(["Last error", el("span", { class: "error" }, m.lastError)]);
  }
  const list = el("dl", { class: "facts" }, ...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  const progress = el("div", { class: "sync-progress", "aria-live": "polite" });
  if (m.lastJob) put(progress, liveJob(m.lastJob, onLeave));
  let sync = null;
  if (maintainer && m.mode === "MIRROR") {
    sync = form({ class: "inline sync", "aria-label": "Sync now" }, [], "Sync now", async () => {
      const job = await mutate(SYNC, { input: { channel: c.name } }, "syncMirror");
      put(progress, liveJob(job, onLeave, (current) => {
        if (current.status === "SUCCEEDED") progress.dataset.done = "true";
      }));
    });
  }
  return section(m.mode === "MIRROR" ? "Mirror" : "Proxy", list, sync, progress,
    m.mode === "MIRROR" ? el("button", { type: "button", class: "small", onclick: refresh }, "Refresh figures") : null);
}

function members(c, owner, refresh) {
  const rows = c.members.map((m) => {
    const cells = [m.user.username, m.user.displayName, m.role.toLowerCase()];
    if (owner) {
      const remove = form({ class: "inline", "aria-label": `Remove ${m.user.username}` }, [], `Remove ${m.user.username}`,
        async () => { await mutate(REMOVE_MEMBER, { channel: c.name, username: m.user.username }, "removeChannelMember"); refresh(); });
      cells.push(remove);
    }
    return cells;
  });
  const username = el("input", { name: "username", required: true, autocomplete: "off" });
  const role = el("select", { name: "role" }, ...ROLES.map((r) => el("option", { value: r }, r.toLowerCase())));
  const add = owner ? form({ class: "inline add-member", "aria-label": "Add a member" },
    [field("User name", username), field("Role", role)], "Add member", async () => {
      await mutate(SET_MEMBER, { channel: c.name, username: username.value.trim(), role: role.value }, "setChannelMember");
      refresh();
    }) : null;
  return section(`Members (${c.members.length})`,
    rows.length ? table(owner ? ["user", "name", "role", ""] : ["user", "name", "role"], rows, { class: "members" })
      : el("p", { class: "muted" }, "No members."), add);
}

function settings(c, staff, refresh) {
  const description = el("textarea", { name: "description", rows: 2 }, c.description);
  const isPrivate = el("input", { type: "checkbox", name: "private", checked: c.private });
  const bz2 = el("input", { type: "checkbox", checked: c.publishing.bz2 });
  const current = el("input", { type: "checkbox", checked: c.publishing.currentRepodata });
  const shards = el("input", { type: "checkbox", checked: c.publishing.shards });
  const controls = [field("Description", description), field("Private", isPrivate),
    el("fieldset", {}, el("legend", {}, "Publishing"), field("repodata.json.bz2", bz2),
      field("current_repodata.json", current), field("Sharded repodata (CEP 16)", shards))];
  let include, exclude, proxy, ttl, prune;
  if (c.mirrorMode) {
    const hint = staff ? "One name or match spec per line." : "Server staff only.";
    include = el("textarea", { rows: 3, disabled: !staff }, c.includelist.join("\n"));
    exclude = el("textarea", { rows: 3, disabled: !staff }, c.excludelist.join("\n"));
    proxy = el("textarea", { rows: 3, disabled: !staff }, c.proxylist.join("\n"));
    controls.push(el("fieldset", {}, el("legend", {}, "Upstream packages"), field("Include only", include, hint),
      field("Exclude", exclude, hint), field("Proxy (indexed here, downloaded from upstream)", proxy, hint)));
    if (c.mirrorMode === "PROXY") {
      ttl = el("input", { type: "number", min: 0, value: c.mirror.ttl });
      controls.push(field("Index cache seconds", ttl));
    } else {
      prune = el("input", { type: "checkbox", checked: c.mirror.prune, disabled: !staff });
      controls.push(field("Remove files gone upstream", prune));
    }
  }
  return section("Settings", form({ class: "settings", "aria-label": "Channel settings" }, controls, "Save settings", async () => {
    const input = { name: c.name, description: description.value, private: isPrivate.checked,
      publishBz2: bz2.checked, publishCurrentRepodata: current.checked, publishShards: shards.checked };
    if (c.mirrorMode && staff) {
      Object.assign(input, { includelist: lines(include.value), excludelist: lines(exclude.value), proxylist: lines(proxy.value) });
      if (prune) input.mirrorPrune = prune.checked;
    }
    if (ttl) input.ttl = Number(ttl.value);
    await mutate(UPDATE, { input }, "updateChannel");
    refresh();
  }));
}

function schedules(c, refresh) {
  const rows = (c.schedules || []).map((s) => [s.kind, s.cron || `every ${s.intervalSeconds} s`, s.enabled ? "enabled" : "disabled"]);
  const kind = el("input", { name: "kind", required: true, value: c.mirrorMode === "MIRROR" ? "synchronize" : "reindex" });
  const interval = el("input", { type: "number", min: 1, name: "interval" });
  const cron = el("input", { name: "cron", placeholder: "*/15 * * * *" });
  const enabled = el("input", { type: "checkbox", checked: true });
  return section("Schedules",
    rows.length ? table(["job", "when", "state"], rows) : el("p", { class: "muted" }, "No schedules."),
    form({ class: "inline schedule", "aria-label": "Set a schedule" }, [field("Job kind", kind),
      field("Every (seconds)", interval), field("or cron (UTC)", cron), field("Enabled", enabled)], "Set schedule", async () => {
      const input = { kind: kind.value.trim(), channel: c.name, enabled: enabled.checked,
        intervalSeconds: interval.value ? Number(interval.value) : null, cron: cron.value.trim() || null };
      await mutate(SCHEDULE, { input }, "setSchedule");
      refresh();
    }));
}

function deletion(c) {
  const confirm = el("input", { name: "confirm", autocomplete: "off", required: true });
  return section("Delete this channel",
    el("p", {}, "Deletes the channel with all its packages and files. This cannot be undone."),
    form({ class: "danger delete-channel", "aria-label": "Delete channel" },
      [field(`Type ${c.name} to confirm`, confirm)], "Delete channel", async () => {
        if (confirm.value !== c.name) throw new Error(`type the channel name (${c.name}) to confirm`);
        await mutate(DELETE, { name: c.name }, "deleteChannel");
        navigate(route(""));
      }));
}
