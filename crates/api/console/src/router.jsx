// A small history router: every view has a URL under /console that can be reloaded, shared
// and bookmarked (the server answers the page for any of them); links navigate without a reload.
import { useEffect, useSyncExternalStore } from "react";

export const BASE = "/console";

const listeners = new Set();
const notify = () => listeners.forEach((listener) => listener());
window.addEventListener("popstate", notify);

function subscribe(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

const currentHref = () => window.location.pathname + window.location.search;

/** The path below /console, split into segments, and the search parameters. */
export function useLocation() {
  const href = useSyncExternalStore(subscribe, currentHref);
  const url = new URL(href, window.location.origin);
  const rest = url.pathname.startsWith(BASE) ? url.pathname.slice(BASE.length) : url.pathname;
  const segments = rest.split("/").filter(Boolean).map(decodeURIComponent);
  return { segments, params: url.searchParams, href };
}

/** `to` is below /console: "/runs/abc?x=1". */
export function navigate(to, { replace = false } = {}) {
  const href = BASE + to;
  if (href === currentHref()) return;
  if (replace) window.history.replaceState(null, "", href);
  else window.history.pushState(null, "", href);
  notify();
}

/** Builds "/path?a=1" from a path and parameters, leaving out empty ones. */
export function hrefOf(path, params = {}) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `${path}?${text}` : path;
}

export function Link({ to, children, className, title, ...rest }) {
  const onClick = (event) => {
    if (event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(to);
  };
  return (
    <a href={BASE + to} onClick={onClick} className={className} title={title} {...rest}>
      {children}
    </a>
  );
}

/** Replaces the search parameters of the current view (filters), keeping its path. */
export function useParamsUpdater(path) {
  return (changes) => {
    const params = new URLSearchParams(window.location.search);
    for (const [key, value] of Object.entries(changes)) {
      if (value === undefined || value === null || value === "") params.delete(key);
      else params.set(key, String(value));
    }
    const search = params.toString();
    navigate(search ? `${path}?${search}` : path, { replace: true });
  };
}

/** Sets the document title for the view shown. */
export function useTitle(title) {
  useEffect(() => {
    document.title = title ? `${title} · Jangar console` : "Jangar console";
  }, [title]);
}
