// A package: summary, install snippet, its files (paged; download links, size, sha256, build,
// depends, uploader, date) and its members (package owners and channel owners manage them).
import { gql, mutate, request } from "../lib/api.js";
import { channelLink, copyable, el, externalLink, field, form, formatBytes, formatDate, section, table, put } from "../lib/dom.js";
import { pageArgs, pager } from "../lib/paging.js";
import { render } from "../lib/router.js";
import { isStaff, session } from "../lib/session.js";

const PACKAGE = gql`query Package($c: String!, $n: String!, $first: Int, $after: String) {
  package(channel: $c, name: $n) {
    name summary description home devUrl docUrl license latestVersion updatedAt
    channel { name url private viewerRole }
    members { role user { username displayName } }
    versions(first: $first, after: $after) {
      totalCount pageInfo { hasNextPage endCursor }
      nodes { filename subdir version build size sha256 uploadedAt depends downloadUrl uploader { username } } } } }`;

const SET_MEMBER = gql`mutation SetPackageMember($channel: String!, $package: String!, $username: String!, $role: Role!) {
  setPackageMember(channel: $channel, package: $package, username: $username, role: $role) {
    __typename ... on Member { role } ... on Error { message } } }`;

const REMOVE_MEMBER = gql`mutation RemovePackageMember($channel: String!, $package: String!, $username: String!) {
  removePackageMember(channel: $channel, package: $package, username: $username) {
    __typename ... on Package { name } ... on Error { message } } }`;

const ROLES = ["MEMBER", "MAINTAINER", "OWNER"];

export default async function pkg({ params, query, root }) {
  const [{ viewer }, data] = await Promise.all([session(),
    request(PACKAGE, { c: params.channel, n: params.package, ...pageArgs(query) })]);
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
    section(`Files (${files.totalCount})`,
      table(["file", "subdir", "version", "build", "size", "sha256", "depends", "uploader", "uploaded"],
        files.nodes.map((f) => [externalLink(f.downloadUrl, f.filename), f.subdir, f.version, f.build, formatBytes(f.size),
          el("code", { class: "sha", title: f.sha256 }, f.sha256), f.depends.join(", "), f.uploader?.username ?? "—",
          formatDate(f.uploadedAt)]), { class: "files" }),
      pager(query, files, "files")),
    members(p, manager),
  );
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
