// A job run's live status: a <progress> bar and status line fed by the jobUpdates subscription.
import { gql, subscribe } from "./api.js";
import { el } from "./dom.js";

export const JOB_FIELDS_DOC = "id kind status error progress { done total message } createdAt finishedAt";

const JOB_UPDATES = gql`subscription JobUpdates($id: ID!) { jobUpdates(id: $id) {
  id kind status error progress { done total message } createdAt finishedAt } }`;

export const FINAL = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);

export function statusText(job) {
  const p = job.progress;
  const counted = p.total !== null && p.total !== undefined ? `${p.done}/${p.total}` : p.done ? `${p.done}` : "";
  return [job.status.toLowerCase(), counted, p.message, job.error].filter(Boolean).join(" · ");
}

// Element showing `job`, following it live until it finishes; onUpdate(job) after each message.
export function liveJob(job, onLeave, onUpdate = () => {}) {
  const bar = el("progress", { max: 1, value: 0, "aria-label": `progress of ${job.kind} run` });
  const text = el("span", { class: "job-status", "data-status": job.status });
  const node = el("div", { class: "live-job", "data-job": job.id }, bar, text);
  const show = (current) => {
    const p = current.progress;
    if (p.total) { bar.max = p.total; bar.value = Math.min(p.done, p.total); }
    else if (current.status === "SUCCEEDED") { bar.max = 1; bar.value = 1; }
    else if (current.status === "RUNNING") bar.removeAttribute("value"); // indeterminate
    text.textContent = statusText(current);
    text.dataset.status = current.status;
    onUpdate(current);
  };
  show(job);
  if (!FINAL.has(job.status)) {
    const stop = subscribe(JOB_UPDATES, { id: job.id }, {
      next: (data) => show(data.jobUpdates),
      error: (error) => { text.textContent = `${text.textContent} (${error.message})`; },
    });
    onLeave(stop);
  }
  return node;
}
