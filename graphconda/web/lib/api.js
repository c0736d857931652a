// The dashboard's only ways to the server: GraphQL over HTTP (`request`, `mutate`, `upload`)
// and over the websocket (`subscribe`, the graphql-transport-ws protocol), plus the few
// /auth routes GraphQL does not cover (the provider list and signing out).
// Every document is a gql-tagged template literal so tests/http/test_web.py can find and validate it.

// The CSRF proof for cookie-authenticated changes: a header a cross-site form cannot send.
const CSRF = { "X-GraphConda-CSRF": "1" };

// A tag that returns the document unchanged (no interpolation: documents are constants).
export function gql(strings) {
  if (strings.length !== 1) throw new Error("GraphQL documents take variables, not interpolation");
  return strings.raw[0];
}

export class ApiError extends Error {}

function errorsOf(body) {
  return body.errors && body.errors.length ? new ApiError(body.errors.map((e) => e.message).join("; ")) : null;
}

export async function request(query, variables = {}) {
  const response = await fetch("/graphql", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...CSRF },
    credentials: "same-origin",
    body: JSON.stringify({ query, variables }),
  });
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`the server answered ${response.status} ${response.statusText}`);
  }
  const error = errorsOf(body);
  if (error) throw error;
  return body.data;
}

// Run a mutation whose field `name` returns a `...Result` union; a typed error (any member
// with `message`: documents select `... on Error { message }`) is thrown as an ApiError.
export async function mutate(query, variables, name) {
  const result = (await request(query, variables))[name];
  if (result && typeof result.message === "string") throw new ApiError(result.message);
  return result;
}

// Subscribe over graphql-transport-ws on /graphql; returns a function that stops it.
// handlers: next(data), error(Error), complete().
export function subscribe(query, variables, handlers) {
  const url = new URL("/graphql", location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(url.href, "graphql-transport-ws");
  let finished = false;
  const send = (message) => socket.send(JSON.stringify(message));
  const finish = () => { finished = true; };
  socket.addEventListener("open", () => send({ type: "connection_init", payload: {} }));
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "connection_ack") send({ id: "1", type: "subscribe", payload: { query, variables } });
    else if (message.type === "ping") send({ type: "pong" });
    else if (message.type === "next") {
      const error = errorsOf(message.payload);
      if (error) handlers.error?.(error);
      else handlers.next?.(message.payload.data);
    } else if (message.type === "error") {
      finish();
      handlers.error?.(new ApiError(message.payload.map((e) => e.message).join("; ")));
      socket.close(1000);
    } else if (message.type === "complete") {
      finish();
      handlers.complete?.();
      socket.close(1000);
    }
  });
  socket.addEventListener("close", (event) => {
    if (!finished) {
      finish();
      handlers.error?.(new ApiError(`live updates stopped (connection closed, ${event.code})`));
    }
  });
  return () => {
    if (finished) return;
    finish();
    if (socket.readyState === WebSocket.OPEN) send({ id: "1", type: "complete" });
    socket.close(1000);
  };
}

// One file through a mutation with an Upload variable (GraphQL multipart request spec), sent
// with XMLHttpRequest for its upload progress: onProgress(fraction). Resolves to the data.
export function upload(query, variables, fileVariable, file, onProgress) {
  return new Promise((resolve, reject) => {
    const body = new FormData();
    body.append("operations", JSON.stringify({ query, variables: { ...variables, [fileVariable]: [null] } }));
    body.append("map", JSON.stringify({ 0: [`variables.${fileVariable}.0`] }));
    body.append("0", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/graphql");
    for (const [name, value] of Object.entries(CSRF)) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      let answer;
      try {
        answer = JSON.parse(xhr.responseText);
      } catch {
        reject(new ApiError(`the server answered ${xhr.status}: ${xhr.responseText.slice(0, 200)}`));
        return;
      }
      const error = errorsOf(answer);
      if (error) reject(error);
      else resolve(answer.data);
    });
    xhr.addEventListener("error", () => reject(new ApiError("network error: the upload did not reach the server")));
    xhr.send(body);
  });
}

// Sign-in options: {providers: [{name, displayName, loginUrl}], dev}.
export async function signInOptions() {
  const response = await fetch("/auth/providers", { credentials: "same-origin" });
  if (!response.ok) return { providers: [], dev: false };
  return response.json();
}

// End this browser's session, or all of the user's sessions with everywhere.
export async function signOut(everywhere = false) {
  const response = await fetch(everywhere ? "/auth/logout?everywhere=1" : "/auth/logout", {
    method: "POST", headers: CSRF, credentials: "same-origin",
  });
  if (!response.ok) throw new ApiError(`sign-out failed: ${response.status}`);
  return response.json();
}
