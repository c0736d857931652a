// Jobs: the runs you may see, filtered by channel, kind and status (in the URL), paged; live
// progress for unfinished runs through jobUpdates; cancel.
import { gql, mutate, request } from "../lib/api.js";
import { channelLink, el, field, form, formatDate, table, put } from "../lib/dom.js";
import { FINAL, liveJob } from "../lib/live.js";
import { pageArgs, pager } from "../lib/paging.js";
import { navigate, render, withQuery } from "../lib/router.js";

const JOBS = gql`query Jobs($filter: JobFilter, $first: Int, $after: String) {
  jobs(filter: $filter, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    nodes { id kind status error progress { done total message } createdAt finishedAt scheduled
      channel { name } triggeredBy { username } } } }`;

const CANCEL = gql`mutation CancelJob($id: ID!) { cancelJob(id: $id) {
  __typename ... on Job { id status } ... on Error { message } } }`;

const STATUSES = ["", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"];

export default async function jobs({ query, root, onLeave }) {
  const filter = {};
  for (const key of ["channel", "kind", "status"]) if (query.get(key)) filter[key] = query.get(key);
  const data = await request(JOBS, { filter, ...pageArgs(query) });
  const channel = el("input", { name: "channel", value: query.get("channel") || "" });
  const kind = el("input", { name: "kind", value: query.get("kind") || "" });
  const status = el("select", { name: "status" }, ...STATUSES.map((s) =>
    el("option", { value: s, selected: (query.get("status") || "") === s }, s ? s.toLowerCase() : "any status")));
  const filterForm = el("form", { class: "inline", role: "search", "aria-label": "Filter jobs" },
    field("Channel", channel), field("Kind", kind), field("Status", status), el("button", { type: "submit" }, "Filter"));
  filterForm.addEventListener("submit", (event) => {
    event.preventDefault();
    navigate(withQuery({ channel: channel.value.trim(), kind: kind.value.trim(), status: status.value, after: null, from: null }));
  });
  const rows = data.jobs.nodes.map((job) => {
    const cancel = FINAL.has(job.status) ? "" : form({ class: "inline", "aria-label": `Cancel job ${job.id}` }, [], "Cancel",
      async () => { await mutate(CANCEL, { id: job.id }, "cancelJob"); });
    return [job.kind, job.channel ? channelLink(job.channel.name) : "server", liveJob(job, onLeave, (current) => {
      if (FINAL.has(current.status) && cancel) cancel.remove();
    }), job.scheduled ? "schedule" : job.triggeredBy?.username ?? "—", formatDate(job.createdAt), cancel];
  });
  put(root, el("h1", {}, `Jobs (${data.jobs.totalCount})`), filterForm,
    rows.length ? table(["kind", "channel", "status", "started by", "created", ""], rows, { class: "jobs" })
      : el("p", { class: "muted" }, "No job runs."),
    pager(query, data.jobs, "runs"),
    el("button", { type: "button", onclick: () => render() }, "Reload"));
}
