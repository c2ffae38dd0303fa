// Who the console is: an admin with a key (kept in this tab's session storage), or nobody in
// open development mode, where the server needs no key. Checked against the server before any
// view shows, so a wrong key is said at the sign-in form and not as errors in every view.
import { ConvexHttpClient } from "convex/browser";
import { createContext, useContext } from "react";

const STORAGE_KEY = "jangar.console.adminKey";

export const Session = createContext({ open: true, adminKey: null });
export const useSession = () => useContext(Session);

/** Asks the server for the schema with `adminKey` (or none): resolves true when it answers. */
async function accepted(adminKey) {
  const headers = { "Content-Type": "application/json" };
  if (adminKey) headers.Authorization = `Convex ${adminKey}`;
  const response = await fetch("/api/query", {
    method: "POST",
    headers,
    body: JSON.stringify({ path: "_system/console/schema:default", args: {}, format: "json" }),
  });
  if (response.status === 401 || response.status === 403) return false;
  const body = await response.json().catch(() => null);
  if (!response.ok || body?.status !== "success") {
    throw new Error(`The server did not answer the console (HTTP ${response.status}): ${body?.errorMessage ?? ""}`);
  }
  return true;
}

/** The session to start with: the stored key if it still works, else open mode if it is, else none. */
export async function startSession() {
  const stored = sessionStorage.getItem(STORAGE_KEY);
  if (stored && (await accepted(stored))) return { open: false, adminKey: stored };
  if (stored) sessionStorage.removeItem(STORAGE_KEY);
  if (await accepted(null)) return { open: true, adminKey: null };
  return null;
}

export async function signIn(adminKey) {
  if (!(await accepted(adminKey))) throw new Error("The server did not accept this admin key.");
  sessionStorage.setItem(STORAGE_KEY, adminKey);
  return { open: false, adminKey };
}

export function signOut() {
  sessionStorage.removeItem(STORAGE_KEY);
  window.location.reload();
}

/**
 * An HTTP client with the session's credentials, acting as the user `actingAs` names
 * ({subject, issuer}) when given. Open mode takes any key as an admin's, so acting as a user
 * works there too.
 */
export function httpClient(session, actingAs) {
  const client = new ConvexHttpClient(window.location.origin, { skipConvexDeploymentUrlCheck: true });
  const key = session.adminKey ?? "open-development-mode";
  if (actingAs || session.adminKey) client.setAdminAuth(key, actingAs);
  return client;
}

/** Headers for the server's admin routes (the function log). */
export function adminHeaders(session) {
  return session.adminKey ? { Authorization: `Convex ${session.adminKey}` } : {};
}
