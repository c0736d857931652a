// Home: the channels you may see, paged, filtered by name and kind; signed-in users create channels here.
import { gql, mutate, request } from "../lib/api.js";
import { badge, channelLink, el, field, form, section, table, put } from "../lib/dom.js";
import { pageArgs, pager } from "../lib/paging.js";
import { navigate, withQuery } from "../lib/router.js";
import { session } from "../lib/session.js";

const CHANNELS = gql`query Channels($first: Int, $after: String, $filter: ChannelFilter) {
  channels(first: $first, after: $after, filter: $filter) {
    totalCount pageInfo { hasNextPage endCursor }
    nodes { name description private mirrorMode url packageCount size } } }`;

const CREATE = gql`mutation CreateChannel($input: CreateChannelInput!) { createChannel(input: $input) {
  __typename ... on Channel { name } ... on Error { message } } }`;

const KINDS = { "": "all kinds", normal: "uploads only", MIRROR: "mirrors", PROXY: "proxies" };

export default async function home({ query, root }) {
  const filter = {};
  if (query.get("q")) filter.nameContains = query.get("q");
  if (query.get("kind") === "MIRROR" || query.get("kind") === "PROXY") filter.mirrorMode = query.get("kind");
  if (query.get("private") === "yes") filter.private = true;
  const [{ viewer }, data] = await Promise.all([session(), request(CHANNELS, { ...pageArgs(query), filter })]);
  const channels = data.channels;
  const filtering = Object.keys(filter).length > 0;

  const nameInput = el("input", { type: "search", name: "q", value: query.get("q") || "" });
  const kind = el("select", { name: "kind" },
    ...Object.entries(KINDS).filter(([k]) => k !== "normal").map(([value, text]) =>
      el("option", { value, selected: query.get("kind") === value || (!value && !query.get("kind")) }, text)));
  const filterForm = el("form", { class: "inline", role: "search", "aria-label": "Filter channels" },
    field("Channel name contains", nameInput), field("Kind", kind), el("button", { type: "submit" }, "Filter"));
  filterForm.addEventListener("submit", (event) => {
    event.preventDefault();
    navigate(withQuery({ q: nameInput.value.trim(), kind: kind.value, after: null, from: null }));
  });

  const rows = channels.nodes.map((c) => [
    el("span", {}, channelLink(c.name), c.private ? badge("private") : null,
      c.mirrorMode ? badge(c.mirrorMode.toLowerCase()) : null),
    c.description, String(c.packageCount), el("code", {}, c.url),
  ]);
  put(root, 
    el("h1", {}, filtering ? `Channels (${channels.totalCount} matching)` : `Channels (${channels.totalCount})`),
    filterForm,
    rows.length ? table(["name", "description", "packages", "conda URL"], rows, { class: "channels" })
      : el("p", { class: "muted" }, filtering ? "No channel matches." : "No channels yet."),
    pager(query, channels, "channels"),
    viewer ? createForm() : el("p", { class: "muted" }, "Sign in to create channels and upload packages."),
  );
}

function createForm() {
  const name = el("input", { name: "name", required: true, pattern: "[a-z0-9._\\-]+", maxlength: 64, autocomplete: "off" });
  const description = el("input", { name: "description" });
  const isPrivate = el("input", { type: "checkbox", name: "private" });
  return section("Create a channel", form({ class: "create-channel", "aria-label": "Create a channel" }, [
    field("Name", name, "Lowercase letters, digits, '.', '-', '_'."),
    field("Description", description),
    field("Private (only members see it)", isPrivate),
  ], "Create channel", async () => {
    const input = { name: name.value.trim(), description: description.value, private: isPrivate.checked };
    const created = await mutate(CREATE, { input }, "createChannel");
    navigate(`#/channel/${encodeURIComponent(created.name)}`);
  }));
}
