// A package: summary, install snippet, its files (paged; download links, size, sha256, build,
// depends, uploader, date) and its members (package owners and channel owners manage them).
import { gql, mutate, request } from "../lib/api.js";
import { channelLink, copyable, el, externalLink, field, form, formatBytes, formatDate, put, section, table } from "../lib/dom.js";
import { downloadChart } from "../lib/chart.js";
import { pageArgs, pager } from "../lib/paging.js";
import { navigate, render, withQuery } from "../lib/router.js";
import { isStaff, session } from "../lib/session.js";

const PACKAGE = gql`query Package($c: String!, $n: String!, $first: Int, $after: String, $period: DownloadPeriod!,
    $since: DateTime) {
  package(channel: $c, name: $n) {
    name summary description home devUrl docUrl license latestVersion updatedAt downloadCount
    downloads(period: $period, from: $since, fillZeros: true) { period total points { start count } }
    channel { name url private viewerRole }
    members { role user { username displayName } }
    versions(first: $first, after: $after) {
      totalCount pageInfo { hasNextPage endCursor }
      nodes { filename subdir version build size sha256 uploadedAt depends downloadUrl downloadCount uploader { username } } } } }`;

const SET_MEMBER = gql`mutation SetPackageMember($channel: String!, $package: String!, $username: String!, $role: Role!) {
  setPackageMember(channel: $channel, package: $package, username: $username, role: $role) {
    __typename ... on Member { role } ... on Error { message } } }`;

const REMOVE_MEMBER = gql`mutation RemovePackageMember($channel: String!, $package: String!, $username: String!) {
  removePackageMember(channel: $channel, package: $package, username: $username) {
    __typename ... on Package { name } ... on Error { message } } }`;

const ROLES = ["MEMBER", "MAINTAINER", "OWNER"];
// The chart's range: the last 30 days by day, or the last 12 months by month (UTC).
const PERIODS = { day: ["DAY", "by day, last 30 days"], month: ["MONTH", "by month, last 12 months"] };

function since(period) {
  const now = new Date();
  return period === "month" ? new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 11, 1)).toISOString()
    : new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - 29)).toISOString();
}

const period = (query) => (query.get("period") === "month" ? "month" : "day");

export default async function pkg({ params, query, root }) {
  const [{ viewer }, data] = await Promise.all([session(),
    request(PACKAGE, { c: params.channel, n: params.package, ...pageArgs(query), period: PERIODS[period(query)][0],
      since: since(period(query)) })]);
  const p = data.package;
  if (!p) {
    put(root, el("h1", {}, params.package), el("p", { class: "error", role: "alert" }, "package not found"));
    return;
  }
  const mine = p.members.find((m) => viewer && m.user.username === viewer.username);
  const manager = isStaff(viewer) || p.channel.viewerRole === "OWNER" || p.channel.viewerRole === "MAINTAINER"
    || mine?.role === "OWNER";
  const url = p.channel.private ? p.channel.url.replace(/^(https?:\/\/[^/]+)\//, "$1/t/<API-KEY>/") : p.channel.url;
  const files = p.versions;
  put(root, 
    el("h1", {}, `${p.name} ${p.latestVersion}`),
    el("p", { class: "muted" }, "in ", channelLink(p.channel.name), ` · ${p.license || "no license given"} · updated ${formatDate(p.updatedAt)}`),
    el("p", {}, p.summary),
    p.description ? el("p", { class: "muted description" }, p.description) : null,
    el("ul", { class: "links" }, ...[["home", p.home], ["development", p.devUrl], ["documentation", p.docUrl]]
      .filter(([, v]) => v).map(([k, v]) => el("li", { class: k === "home" ? "home" : null }, `${k}: `, externalLink(v)))),
    section("Install", copyable(`conda install -c ${url} ${p.name}`), copyable(`mamba install -c ${url} ${p.name}`),
      copyable(`pixi add --channel ${url} ${p.name}`)),
    downloads(p, query),
    section(`Files (${files.totalCount})`,
      table(["file", "subdir", "version", "build", "size", "sha256", "depends", "uploader", "uploaded", "downloads"],
        files.nodes.map((f) => [externalLink(f.downloadUrl, f.filename), f.subdir, f.version, f.build, formatBytes(f.size),
          el("code", { class: "sha", title: f.sha256 }, f.sha256), f.depends.join(", "), f.uploader?.username ?? "—",
          formatDate(f.uploadedAt), String(f.downloadCount)]), { class: "files" }),
      pager(query, files, "files")),
    members(p, manager),
  );
}

function downloads(p, query) {
  const choice = el("select", { name: "period" }, ...Object.entries(PERIODS).map(([key, [, text]]) =>
    el("option", { value: key, selected: period(query) === key }, text)));
  choice.addEventListener("change", () => navigate(withQuery({ period: choice.value === "day" ? null : choice.value })));
  return section(`Downloads (${p.downloadCount} in all)`,
    field("Chart", choice),
    downloadChart(p.downloads, `Downloads of ${p.name} ${PERIODS[period(query)][1]}: ${p.downloads.total}`));
}

function members(p, manager) {
  const refresh = () => render();
  const rows = p.members.map((m) => [m.user.username, m.role.toLowerCase(), manager
    ? form({ class: "inline", "aria-label": `Remove ${m.user.username}` }, [], `Remove ${m.user.username}`, async () => {
      await mutate(REMOVE_MEMBER, { channel: p.channel.name, package: p.name, username: m.user.username }, "removePackageMember");
      refresh();
    }) : ""]);
  const username = el("input", { name: "username", required: true, autocomplete: "off" });
  const role = el("select", { name: "role" }, ...ROLES.map((r) => el("option", { value: r }, r.toLowerCase())));
  return section(`Package members (${p.members.length})`,
    el("p", { class: "muted" }, "Channel members have their role on the channel; these users have one on this package only."),
    rows.length ? table(["user", "role", ""], rows) : null,
    manager ? form({ class: "inline", "aria-label": "Add a package member" }, [field("User name", username), field("Role", role)],
      "Add package member", async () => {
        await mutate(SET_MEMBER, { channel: p.channel.name, package: p.name, username: username.value.trim(), role: role.value },
          "setPackageMember");
        refresh();
      }) : null);
}
