// Search: packages across every channel you may see, paged.
import { gql, request } from "../lib/api.js";
import { channelLink, el, packageLink, table, put } from "../lib/dom.js";
import { pageArgs, pager } from "../lib/paging.js";

const SEARCH = gql`query Search($q: String!, $first: Int, $after: String) {
  search(query: $q, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    nodes { name summary latestVersion channel { name } } } }`;

export default async function search({ params, query, root }) {
  const data = await request(SEARCH, { q: params.query, ...pageArgs(query) });
  const input = document.getElementById("search");
  if (input && !input.value) input.value = params.query;
  const rows = data.search.nodes.map((p) =>
    [packageLink(p.channel.name, p.name), channelLink(p.channel.name), p.latestVersion, p.summary]);
  put(root, el("h1", {}, `Search: ${params.query}`),
    rows.length ? table(["package", "channel", "latest", "summary"], rows) : el("p", { class: "muted" }, "No package matches."),
    pager(query, data.search, "packages"));
}
