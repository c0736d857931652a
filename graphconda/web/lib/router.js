// The hash router: `#/channel/main?after=...` names a page and its state, so the URL is
// bookmarkable and the back button works. Pages register a path pattern; a page gets
// {params, query, root, onLeave} and renders into root. onLeave(fn) runs fn when the user
// navigates away (closing live subscriptions).

const routes = [];
let leaving = [];
let generation = 0;
let shownHash = null;

// pattern: "channel/:channel/:package"; render: async (ctx) => void.
export function addRoute(pattern, render) {
  routes.push({ parts: pattern ? pattern.split("/") : [], render });
}

export function parseHash(hash = location.hash) {
  const [path, search = ""] = hash.replace(/^#\/?/, "").split("?");
  const parts = path ? path.split("/").map(decodeURIComponent) : [];
  return { parts, query: new URLSearchParams(search) };
}

function match(parts) {
  for (const candidate of routes) {
    if (candidate.parts.length !== parts.length) continue;
    const params = {};
    if (candidate.parts.every((p, i) => (p.startsWith(":") ? ((params[p.slice(1)] = parts[i]), true) : p === parts[i]))) {
      return { render: candidate.render, params };
    }
  }
  return null;
}

// The current route's URL with some query parameters changed (null removes one).
export function withQuery(changes) {
  const { parts, query } = parseHash();
  for (const [key, value] of Object.entries(changes)) {
    if (value === null || value === undefined || value === "") query.delete(key);
    else query.set(key, value);
  }
  const search = query.toString();
  return "#/" + parts.map(encodeURIComponent).join("/") + (search ? `?${search}` : "");
}

export function navigate(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

export async function render() {
  for (const fn of leaving) fn();
  leaving = [];
  generation += 1;
  const mine = generation;
  const root = document.getElementById("main");
  const { parts, query } = parseHash();
  const found = match(parts);
  const onLeave = (fn) => { if (mine === generation) leaving.push(fn); else fn(); };
  try {
    if (!found) {
      root.replaceChildren(document.createElement("h1"));
      root.firstChild.textContent = "Page not found";
      return;
    }
    // The page builds into a detached element and is shown only if it is still the current one:
    // a slow earlier page (the first load, a click before it) never overwrites a later one.
    const staging = document.createElement("div");
    await found.render({ params: found.params, query, root: staging, onLeave, current: () => mine === generation });
    if (mine === generation) root.replaceChildren(...staging.childNodes);
  } catch (error) {
    if (mine !== generation) return;
    const message = document.createElement("p");
    message.className = "error";
    message.setAttribute("role", "alert");
    message.textContent = error.message;
    root.replaceChildren(message);
  }
  // On a new page (not a refresh after a form was sent), its <h1> gets focus so screen
  // readers announce it and Tab starts from the top of the content.
  if (mine === generation && shownHash !== location.hash) {
    shownHash = location.hash;
    const heading = root.querySelector("h1");
    if (heading) { heading.tabIndex = -1; heading.focus({ preventScroll: true }); }
  }
}

export function start() {
  window.addEventListener("hashchange", render);
  return render();
}
