// Starts GraphiQL (React and GraphiQL's standalone builds are loaded before this file).
// Kept out of the page so that the Content-Security-Policy can forbid inline scripts.

// This page's own path: /graphql, or /t/<key>/graphql, whose key then goes with every request.
const endpoint = location.pathname;
const subscriptionUrl = new URL(endpoint, location.href);
subscriptionUrl.protocol = location.protocol === "https:" ? "wss:" : "ws:";

const fetcher = GraphiQL.createFetcher({
  url: endpoint,
  subscriptionUrl: subscriptionUrl.href,  // subscriptions over graphql-ws on the same path
  // The browser sends the session cookie (same origin); this header tells the CSRF guard
  // (graphconda/http/identity.py) that one of our own pages made the request.
  headers: { "X-GraphConda-CSRF": "1" },
});

const defaultQuery = `# graphconda's GraphQL API: Ctrl-Enter runs the query,
# the book icon opens the documentation of every type.
# You act as your logged-in user, or as the API key you put
# in the Headers tab ({"X-API-Key": "..."}: never saved).
{
  serverInfo { version }
  viewer { username serverRole }
  channels(first: 10) { totalCount nodes { name description packageCount } }
}
`;

ReactDOM.createRoot(document.getElementById("graphiql")).render(
  React.createElement(GraphiQL, {
    fetcher,
    defaultQuery,
    defaultEditorToolsVisibility: true,
    isHeadersEditorEnabled: true,
    shouldPersistHeaders: false,  // headers may hold API keys: never written to localStorage
  }),
);
