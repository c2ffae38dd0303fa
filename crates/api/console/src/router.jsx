// A small history router: every view has a URL under /console that can be reloaded, shared
// and bookmarked (the server answers the page for any of them); links navigate without a reload.
import { useEffect, useRef, useState, useSyncExternalStore } from "react";

export const BASE = "/console";

const listeners = new Set();
const notify = () => listeners.forEach((listener) => listener());
window.addEventListener("popstate", notify);

function subscribe(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

const currentHref = () => window.location.pathname + window.location.search;

/** A path segment as typed; a malformed escape (`%zz`) stays as it is rather than throwing. */
function decodeSegment(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** The path below /console, split into segments, and the search parameters. */
export function useLocation() {
  const href = useSyncExternalStore(subscribe, currentHref);
  const url = new URL(href, window.location.origin);
  const rest = url.pathname.startsWith(BASE) ? url.pathname.slice(BASE.length) : url.pathname;
  const segments = rest.split("/").filter(Boolean).map(decodeSegment);
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

/**
 * A filter's text field: typed text is the field's own state (so typing never waits for the
 * URL), written to the URL parameter once typing pauses, and replaced when the URL changes from
 * elsewhere (Back, Forward, a link).
 */
export function ParamInput({ value, onCommit, ...rest }) {
  const [text, setText] = useState(value);
  const written = useRef(value);
  useEffect(() => {
    if (value !== written.current) {
      written.current = value;
      setText(value);
    }
  }, [value]);
  useEffect(() => {
    if (text === written.current) return undefined;
    const timer = setTimeout(() => {
      written.current = text;
      onCommit(text);
    }, 250);
    return () => clearTimeout(timer);
  }, [text]);
  return <input value={text} onChange={(e) => setText(e.target.value)} {...rest} />;
}

/** Sets the document title for the view shown. */
export function useTitle(title) {
  useEffect(() => {
    document.title = title ? `${title} · Jangar console` : "Jangar console";
  }, [title]);
}
