// Upload: drop or pick .conda/.tar.bz2 files; each goes through GraphQL uploadPackages on its
// own request, with its own progress bar and its own result or error.
import { gql, request, upload } from "../lib/api.js";
import { el, field, packageLink, put } from "../lib/dom.js";

const MY_CHANNELS = gql`query UploadTargets { viewer { username memberships { role channel { name mirrorMode } } } }`;

const UPLOAD = gql`mutation UploadPackages($channel: String!, $files: [Upload!]!, $force: Boolean!) {
  uploadPackages(channel: $channel, files: $files, force: $force) {
    __typename ... on PackageFile { filename subdir name version } ... on Error { message } } }`;

export default async function uploadPage({ query, root }) {
  const data = await request(MY_CHANNELS);
  if (!data.viewer) {
    put(root, el("h1", {}, "Upload packages"), el("p", { class: "error", role: "alert" }, "Sign in to upload."));
    return;
  }
  const writable = data.viewer.memberships.filter((m) => !m.channel.mirrorMode && m.role !== "MEMBER").map((m) => m.channel.name);
  const wanted = query.get("channel");
  const channel = el("select", { name: "channel", required: true },
    ...writable.map((name) => el("option", { value: name, selected: name === wanted }, name)));
  const other = el("input", { name: "other", placeholder: "or type a channel name", value: wanted && !writable.includes(wanted) ? wanted : "" });
  const force = el("input", { type: "checkbox" });
  const picker = el("input", { type: "file", multiple: true, accept: ".conda,.tar.bz2", id: "upload-files" });
  const results = el("ul", { class: "uploads", "aria-live": "polite" });
  const drop = el("div", { class: "dropzone", tabindex: 0, role: "button", "aria-label": "Drop package files here, or press Enter to choose files" },
    "Drop .conda or .tar.bz2 files here, or press Enter to choose files");
  const start = (files) => {
    const target = other.value.trim() || channel.value;
    for (const file of files) results.append(uploadOne(target, file, force.checked));
  };
  drop.addEventListener("click", () => picker.click());
  drop.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); picker.click(); } });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    start(event.dataTransfer.files);
  });
  picker.addEventListener("change", () => { start(picker.files); picker.value = ""; });
  put(root, el("h1", {}, "Upload packages"),
    el("div", { class: "inline" }, field("Channel", channel), field("Other channel", other), field("Replace existing files", force)),
    drop, field("Choose files", picker), results);
}

function uploadOne(channel, file, force) {
  const bar = el("progress", { max: 1, value: 0, "aria-label": `upload progress of ${file.name}` });
  const status = el("span", { class: "upload-status" }, "uploading…");
  const item = el("li", { "data-file": file.name }, el("strong", {}, file.name), " ", bar, " ", status);
  upload(UPLOAD, { channel, force }, "files", file, (fraction) => { bar.value = fraction; })
    .then((data) => {
      const result = data.uploadPackages[0];
      if (result.message !== undefined) {
        status.textContent = result.message;
        status.className = "upload-status error";
        item.dataset.state = "error";
      } else {
        bar.value = 1;
        put(status, `uploaded to ${result.subdir}: `, packageLink(channel, result.name, `${result.name} ${result.version}`));
        item.dataset.state = "done";
      }
    })
    .catch((error) => {
      status.textContent = error.message;
      status.className = "upload-status error";
      item.dataset.state = "error";
    });
  return item;
}
