// Cursor paging that lives in the URL (`after`, and `from` for the "showing" line): Next
// moves forward, Previous is the browser's back button, First drops the cursor.
import { el } from "./dom.js";
import { withQuery } from "./router.js";

export const PAGE_SIZE = 50;

export function pageArgs(query) {
  return { first: PAGE_SIZE, after: query.get("after") || null };
}

// "Showing 51–100 of 130" with First / Previous / Next controls.
export function pager(query, connection, noun) {
  const from = Number(query.get("from") || 0);
  const shown = connection.nodes.length;
  const total = connection.totalCount;
  const label = shown ? `Showing ${from + 1}–${from + shown} of ${total} ${noun}` : `${total} ${noun}`;
  const controls = [];
  if (query.get("after")) {
    controls.push(el("a", { href: withQuery({ after: null, from: null }), class: "button" }, "First page"));
    const back = el("button", { type: "button" }, "Previous page");
    back.addEventListener("click", () => history.back());
    controls.push(back);
  }
  if (connection.pageInfo.hasNextPage) {
    controls.push(el("a", { href: withQuery({ after: connection.pageInfo.endCursor, from: from + shown }),
      class: "button", rel: "next" }, "Next page"));
  }
  return el("nav", { class: "pager", "aria-label": `${noun} pages` }, el("span", { class: "muted count" }, label), ...controls);
}
