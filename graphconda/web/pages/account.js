// Account: who you are, your channels and roles, API keys (create with scopes and expiry; the
// secret is shown once with a copy button; revoke), and signing out everywhere.
import { gql, mutate, request, signOut } from "../lib/api.js";
import { channelLink, copyable, el, field, form, formatDate, section, table, put } from "../lib/dom.js";
import { render } from "../lib/router.js";

const ACCOUNT = gql`query Account { viewer { username displayName email serverRole createdAt
  memberships { role channel { name private mirrorMode } }
  apiKeys { id description createdAt expiresAt lastUsedAt revokedAt scopes { channel package role } } } }`;

const CREATE_KEY = gql`mutation CreateApiKey($input: CreateApiKeyInput!) { createApiKey(input: $input) {
  __typename ... on NewApiKey { secret apiKey { id } } ... on Error { message } } }`;

const REVOKE_KEY = gql`mutation RevokeApiKey($id: ID!) { revokeApiKey(id: $id) {
  __typename ... on ApiKey { id revokedAt } ... on Error { message } } }`;

const ROLES = ["MEMBER", "MAINTAINER", "OWNER"];

export default async function account({ root }) {
  const { viewer } = await request(ACCOUNT);
  if (!viewer) {
    put(root, el("h1", {}, "Account"), el("p", { class: "error", role: "alert" }, "Sign in to see your account."));
    return;
  }
  const secretArea = el("div", { class: "new-secret", "aria-live": "polite" });
  put(root, 
    el("h1", {}, `Account: ${viewer.username}`),
    el("p", { class: "muted" }, [viewer.displayName, viewer.email, viewer.serverRole ? `server ${viewer.serverRole.toLowerCase()}` : null,
      `since ${formatDate(viewer.createdAt)}`].filter(Boolean).join(" · ")),
    section(`My channels (${viewer.memberships.length})`, viewer.memberships.length
      ? table(["channel", "role"], viewer.memberships.map((m) => [channelLink(m.channel.name), m.role.toLowerCase()]))
      : el("p", { class: "muted" }, "No channel roles yet.")),
    section("API keys", keyTable(viewer.apiKeys), secretArea, createKey(secretArea)),
    section("Sessions", form({ class: "inline", "aria-label": "Sign out everywhere" }, [], "Sign out everywhere", async () => {
      await signOut(true);
      location.assign("/#/");
      location.reload();
    })),
  );
}

function keyTable(keys) {
  const now = Date.now();
  const state = (k) => (k.revokedAt ? "revoked" : k.expiresAt && new Date(k.expiresAt).getTime() < now ? "expired" : "active");
  const rows = keys.map((k) => [k.description || "—",
    k.scopes.length ? k.scopes.map((s) => `${s.role.toLowerCase()} on ${s.channel ?? "?"}${s.package ? `/${s.package}` : ""}`).join(", ") : "full rights",
    formatDate(k.createdAt), k.expiresAt ? formatDate(k.expiresAt) : "never", formatDate(k.lastUsedAt), state(k),
    state(k) === "active" ? form({ class: "inline", "aria-label": `Revoke key ${k.description || k.id}` }, [], "Revoke", async () => {
      await mutate(REVOKE_KEY, { id: k.id }, "revokeApiKey");
      render();
    }) : ""]);
  return rows.length ? table(["description", "scope", "created", "expires", "last used", "state", ""], rows, { class: "keys" })
    : el("p", { class: "muted" }, "No API keys.");
}

function createKey(secretArea) {
  const description = el("input", { name: "description" });
  const expires = el("input", { type: "date", name: "expires" });
  const channel = el("input", { name: "scope-channel", placeholder: "any channel (full rights)" });
  const pkg = el("input", { name: "scope-package", placeholder: "every package" });
  const role = el("select", { name: "scope-role" }, ...ROLES.map((r) => el("option", { value: r }, r.toLowerCase())));
  return form({ class: "create-key", "aria-label": "Create an API key" }, [
    field("Description", description), field("Expires on (UTC)", expires, "Empty: never."),
    el("fieldset", {}, el("legend", {}, "Scope (optional)"), field("Channel", channel), field("Package", pkg), field("Role", role)),
  ], "Create key", async () => {
    const input = { description: description.value };
    if (expires.value) input.expiresAt = new Date(`${expires.value}T23:59:59Z`).toISOString();
    if (channel.value.trim()) input.scopes = [{ channel: channel.value.trim(), role: role.value, package: pkg.value.trim() || null }];
    const created = await mutate(CREATE_KEY, { input }, "createApiKey");
    await render();
    // After the re-render: the new secret, this once only.
    put(document.querySelector(".new-secret"),
      el("p", { class: "notice" }, "Your new key. It is shown this once only: copy it now."), copyable(created.secret));
  });
}
