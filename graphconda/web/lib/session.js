// Who is looking: the viewer (null when anonymous) and server facts, asked once per page
// load and again after signing in or out.
import { gql, request } from "./api.js";

const VIEWER = gql`query Viewer { serverInfo { version storageBackend databaseBackend }
  viewer { username displayName serverRole } }`;

let cached = null;

export async function session(refresh = false) {
  if (!cached || refresh) cached = request(VIEWER);
  try {
    return await cached;
  } catch (error) {
    cached = null;
    throw error;
  }
}

export const isStaff = (viewer) => viewer && (viewer.serverRole === "OWNER" || viewer.serverRole === "MAINTAINER");
