// The dashboard shell: header (navigation, search, sign-in and sign-out), the router and
// the page table. Pages live in pages/*.js (one ES module each); shared code in lib/.
// Every byte of data comes from the GraphQL API at /graphql (see lib/api.js).
import { signInOptions, signOut } from "./lib/api.js";
import { el, put } from "./lib/dom.js";
import { addRoute, navigate, start } from "./lib/router.js";
import { isStaff, session } from "./lib/session.js";
import home from "./pages/home.js";
import search from "./pages/search.js";
import channel from "./pages/channel.js";
import pkg from "./pages/package.js";
import jobs from "./pages/jobs.js";
import upload from "./pages/upload.js";
import account from "./pages/account.js";
import admin from "./pages/admin.js";

addRoute("", home);
addRoute("search/:query", search);
addRoute("channel/:channel", channel);
addRoute("channel/:channel/:package", pkg);
addRoute("jobs", jobs);
addRoute("upload", upload);
addRoute("account", account);
addRoute("admin", admin);

async function renderHeader() {
  const nav = document.getElementById("nav");
  const user = document.getElementById("user");
  let info;
  try {
    info = await session(true);
  } catch (error) {
    document.getElementById("footer").textContent = error.message;
    return;
  }
  const { viewer, serverInfo: s } = info;
  document.getElementById("footer").textContent =
    `graphconda ${s.version} · storage: ${s.storageBackend} · database: ${s.databaseBackend}`;
  put(nav, 
    el("a", { href: "#/" }, "Channels"),
    viewer ? el("a", { href: "#/jobs" }, "Jobs") : null,
    viewer ? el("a", { href: "#/upload" }, "Upload") : null,
    viewer ? el("a", { href: "#/account" }, "Account") : null,
    isStaff(viewer) ? el("a", { href: "#/admin" }, "Admin") : null,
    el("a", { href: "/graphql" }, "GraphiQL"),
  );
  if (viewer) {
    const out = el("button", { type: "button", id: "sign-out" }, "Sign out");
    out.addEventListener("click", async () => {
      out.disabled = true;
      try {
        await signOut();
      } catch (error) {
        out.disabled = false;
        out.textContent = error.message;
        return;
      }
      await renderHeader();
      navigate("#/");
    });
    put(user, el("span", { id: "viewer" }, `signed in as ${viewer.username}`), out);
    return;
  }
  const options = await signInOptions();
  const next = encodeURIComponent(`/${location.hash}`);
  const links = options.providers.map((p) =>
    el("a", { href: `${p.loginUrl}?next=${next}`, class: "button" }, `Sign in with ${p.displayName}`));
  let dev = null;
  if (options.dev) {
    const input = el("input", { name: "username", value: "dev", "aria-label": "Dev user name", size: 8, required: true });
    dev = el("form", { class: "dev-login", "aria-label": "Dev login" }, input, el("button", { type: "submit" }, "Dev login"));
    dev.addEventListener("submit", (event) => {
      event.preventDefault();
      // A GET that sets the session cookie and redirects back here.
      location.assign(`/auth/dev/login/${encodeURIComponent(input.value.trim())}?next=${next}`);
    });
  }
  put(user, el("span", { id: "viewer" }, "anonymous"), ...links, dev);
}

document.getElementById("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const query = document.getElementById("search").value.trim();
  if (query) navigate(`#/search/${encodeURIComponent(query)}`);
});

renderHeader();
start();
