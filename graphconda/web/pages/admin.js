// Admin (server owners and maintainers): users and their server roles; create mirror and proxy channels.
import { gql, mutate, request } from "../lib/api.js";
import { el, field, form, formatDate, lines, section, table, put } from "../lib/dom.js";
import { navigate, render } from "../lib/router.js";
import { isStaff, session } from "../lib/session.js";

const USERS = gql`query Users { users { username displayName serverRole createdAt } }`;

const SET_ROLE = gql`mutation SetServerRole($username: String!, $role: Role) { setServerRole(username: $username, role: $role) {
  __typename ... on User { username serverRole } ... on Error { message } } }`;

const CREATE = gql`mutation CreateMirror($input: CreateChannelInput!) { createChannel(input: $input) {
  __typename ... on Channel { name } ... on Error { message } } }`;

export default async function admin({ root }) {
  const { viewer } = await session();
  if (!isStaff(viewer)) {
    put(root, el("h1", {}, "Admin"), el("p", { class: "error", role: "alert" }, "Server owners and maintainers only."));
    return;
  }
  const { users } = await request(USERS);
  const owner = viewer.serverRole === "OWNER";
  const rows = users.map((u) => {
    const role = el("select", { "aria-label": `Server role of ${u.username}`, disabled: !owner },
      ...["", "MEMBER", "MAINTAINER", "OWNER"].map((r) => el("option", { value: r, selected: (u.serverRole || "") === r }, r ? r.toLowerCase() : "none")));
    const change = owner ? form({ class: "inline", "aria-label": `Set server role of ${u.username}` }, [role], "Set role", async () => {
      await mutate(SET_ROLE, { username: u.username, role: role.value || null }, "setServerRole");
      render();
    }) : (u.serverRole || "none").toLowerCase();
    return [u.username, u.displayName, change, formatDate(u.createdAt)];
  });
  put(root, el("h1", {}, "Admin"),
    section(`Users (${users.length})`, table(["user", "name", "server role", "since"], rows, { class: "users" })),
    section("Create a mirror or proxy channel", mirrorForm()));
}

function mirrorForm() {
  const name = el("input", { name: "name", required: true, autocomplete: "off" });
  const mode = el("select", { name: "mode" }, el("option", { value: "MIRROR" }, "mirror (full copy, synced)"),
    el("option", { value: "PROXY" }, "proxy (fetched on demand)"));
  const upstream = el("input", { name: "upstream", type: "url", required: true, placeholder: "https://conda.anaconda.org/conda-forge" });
  const include = el("textarea", { rows: 2 });
  const exclude = el("textarea", { rows: 2 });
  const isPrivate = el("input", { type: "checkbox" });
  const syncNow = el("input", { type: "checkbox", checked: true });
  return form({ class: "create-mirror", "aria-label": "Create a mirror or proxy channel" }, [field("Name", name), field("Kind", mode),
    field("Upstream channel URL", upstream), field("Include only", include, "One name or match spec per line; empty: everything."),
    field("Exclude", exclude), field("Private", isPrivate), field("Sync at once (mirrors)", syncNow)], "Create channel", async () => {
    const input = { name: name.value.trim(), mirrorMode: mode.value, mirrorChannelUrl: upstream.value.trim(), private: isPrivate.checked,
      includelist: lines(include.value), excludelist: lines(exclude.value), syncNow: syncNow.checked };
    const created = await mutate(CREATE, { input }, "createChannel");
    navigate(`#/channel/${encodeURIComponent(created.name)}`);
  });
}
