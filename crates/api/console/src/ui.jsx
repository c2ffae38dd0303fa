// The pieces every view is made of: times, durations, ids, statuses, JSON with links, and the
// empty, loading and error states.
import { Component, createContext, useContext, useEffect, useState } from "react";
import { Link } from "./router.jsx";

/** The schema the server described: tables by name and by number (for ids). */
export const SchemaContext = createContext({ tables: [], byName: new Map(), byNumber: new Map() });
export const useSchema = () => useContext(SchemaContext);

/** The current time, ticking: relative times and running durations stay true without a reload. */
export function useNow(everyMs = 5000) {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(timer);
  }, [everyMs]);
  return now;
}

const exact = (ms) => new Date(ms).toISOString().replace("T", " ").replace("Z", " UTC");

export function relative(ms, now) {
  const seconds = Math.round((now - ms) / 1000);
  const future = seconds < 0;
  const s = Math.abs(seconds);
  const text =
    s < 5 ? "just now" : s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m` : s < 86400 ? `${Math.floor(s / 3600)}h` : `${Math.floor(s / 86400)}d`;
  if (text === "just now") return text;
  return future ? `in ${text}` : `${text} ago`;
}

/** "3m ago", with the exact time on hover. */
export function RelTime({ ms }) {
  const now = useNow();
  if (typeof ms !== "number") return <span className="muted">—</span>;
  return (
    <time dateTime={new Date(ms).toISOString()} title={exact(ms)}>
      {relative(ms, now)}
    </time>
  );
}

export function formatDuration(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${Math.round(s % 60)}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

/** From `start` to `end`, or to now (ticking) while it has no end. */
export function Duration({ start, end }) {
  const now = useNow(1000);
  if (typeof start !== "number") return <span className="muted">—</span>;
  const live = typeof end !== "number";
  return (
    <span title={live ? "still going" : undefined} className={live ? "live-duration" : undefined}>
      {formatDuration((live ? now : end) - start)}
    </span>
  );
}

export function CopyButton({ text, label = "Copy" }) {
  const [copied, setCopied] = useState(false);
  const copy = async (event) => {
    event.preventDefault();
    event.stopPropagation();
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // Without the clipboard API (plain http on another host), select the text to copy by hand.
      window.prompt("Copy:", text);
    }
    setCopied(true);
    setTimeout(() => setCopied(false), 1200);
  };
  return (
    <button type="button" className="copy" onClick={copy} title={`${label} ${text}`} aria-label={`${label} ${text}`}>
      {copied ? (
        "✓"
      ) : (
        <svg viewBox="0 0 16 16" width="12" height="12" aria-hidden="true">
          <rect x="5" y="5" width="9" height="9" rx="1.5" fill="none" stroke="currentColor" strokeWidth="1.5" />
          <path d="M3 11V3.5C3 2.7 3.7 2 4.5 2H11" fill="none" stroke="currentColor" strokeWidth="1.5" />
        </svg>
      )}
    </button>
  );
}

/** An id, shortened, linking to its document (or `to`), with a copy button. */
export function Id({ id, to, full = false }) {
  const { byNumber } = useSchema();
  if (typeof id !== "string") return <span className="muted">—</span>;
  const table = byNumber.get(tableNumberOfId(id));
  const target = to ?? (table ? `/data/${table.name}/${id}` : undefined);
  const shown = full ? id : `${id.slice(0, 8)}…`;
  return (
    <span className="id">
      {target ? (
        <Link to={target} title={id} className="mono">
          {shown}
        </Link>
      ) : (
        <code title={id}>{shown}</code>
      )}
      <CopyButton text={id} label="Copy id" />
    </span>
  );
}

export function Status({ status }) {
  if (!status) return <span className="muted">—</span>;
  return <span className={`status status-${status}`}>{status}</span>;
}

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

/**
 * The table number a Convex id encodes (varint, 16 bytes, fletcher-16 footer, in base32), or
 * undefined when the text is no id: so ids anywhere in a document link to what they name.
 */
export function tableNumberOfId(text) {
  if (typeof text !== "string" || text.length < 31 || text.length > 37) return undefined;
  const bytes = [];
  let buffer = 0;
  let bits = 0;
  for (const ch of text) {
    const digit = ALPHABET.indexOf(ch);
    if (digit < 0) return undefined;
    buffer = ((buffer << 5) | digit) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      bytes.push((buffer >> bits) & 0xff);
    }
  }
  if (bytes.length < 19) return undefined;
  const body = bytes.slice(0, -2);
  let sum1 = 0;
  let sum2 = 0;
  for (const b of body) {
    sum1 = (sum1 + b) & 0xff;
    sum2 = (sum2 + sum1) & 0xff;
  }
  if (bytes[bytes.length - 2] !== sum1 || bytes[bytes.length - 1] !== sum2) return undefined;
  let table = 0;
  for (let i = 0; i < 5; i++) {
    table += (body[i] & 0x7f) * 2 ** (7 * i);
    if ((body[i] & 0x80) === 0) return body.length - i - 1 === 16 ? table : undefined;
  }
  return undefined;
}

/** JSON, formatted, with every string that is an id linking to its document. */
export function Json({ value, indent = 0 }) {
  const pad = "  ".repeat(indent);
  if (value === null || value === undefined) return <span className="j-null">{String(value)}</span>;
  if (typeof value === "string") {
    return <JsonString text={value} />;
  }
  if (typeof value === "number" || typeof value === "bigint") return <span className="j-num">{String(value)}</span>;
  if (typeof value === "boolean") return <span className="j-bool">{String(value)}</span>;
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    return (
      <>
        {"[\n"}
        {value.map((item, i) => (
          <span key={i}>
            {pad}
            {"  "}
            <Json value={item} indent={indent + 1} />
            {i < value.length - 1 ? ",\n" : "\n"}
          </span>
        ))}
        {pad}
        {"]"}
      </>
    );
  }
  if (value instanceof ArrayBuffer) return <span className="j-str">{`<${value.byteLength} bytes>`}</span>;
  const entries = Object.entries(value);
  if (entries.length === 0) return "{}";
  return (
    <>
      {"{\n"}
      {entries.map(([key, item], i) => (
        <span key={key}>
          {pad}
          {"  "}
          <span className="j-key">{JSON.stringify(key)}</span>
          {": "}
          <Json value={item} indent={indent + 1} />
          {i < entries.length - 1 ? ",\n" : "\n"}
        </span>
      ))}
      {pad}
      {"}"}
    </>
  );
}

function JsonString({ text }) {
  const { byNumber } = useSchema();
  const table = byNumber.get(tableNumberOfId(text));
  const quoted = JSON.stringify(text);
  if (!table) return <span className="j-str">{quoted}</span>;
  return (
    <Link to={`/data/${table.name}/${text}`} className="j-str j-id" title={`A ${table.name} document`}>
      {quoted}
    </Link>
  );
}

export function JsonBlock({ value, className = "" }) {
  return (
    <pre className={`json ${className}`}>
      <Json value={value} />
    </pre>
  );
}

export function Empty({ children }) {
  return <div className="empty">{children}</div>;
}

export function Loading({ what = "Loading" }) {
  return (
    <div className="loading" role="status">
      {what}…
    </div>
  );
}

/** What a failed call said: the application error's code and message when it has them. */
export function describeError(error) {
  const data = error?.data;
  if (data && typeof data === "object") {
    return { code: data.code ?? "Error", message: data.message ?? JSON.stringify(data), data };
  }
  const text = String(error?.message ?? error);
  // Errors arrive as "[CONVEX Q(path)] [Request ID: …] Server Error\n…\n  Called by client":
  // keep what the server said.
  const said = text
    .replace(/^\[CONVEX [QMA]\([^)]*\)\]\s*/, "")
    .replace(/^\[Request ID: [^\]]*\]\s*/, "")
    .replace(/^Server Error\s*/, "")
    .replace(/\s*Called by client\s*$/, "");
  const coded = /^(?:Uncaught )?(?:Error: )?([A-Z][A-Za-z]+): (.*)$/s.exec(said.trim());
  return coded ? { code: coded[1], message: coded[2] } : { code: "Error", message: said.trim() || text };
}

export function ErrorBox({ error, hint }) {
  const { code, message } = describeError(error);
  return (
    <div className="error-box" role="alert">
      <strong className="error-code">{code}</strong> <span className="error-message">{message}</span>
      {hint ? <div className="hint">{hint}</div> : null}
    </div>
  );
}

/** A view that throws (a query's error) shows it in place, and recovers when its key changes. */
export class ErrorBoundary extends Component {
  constructor(props) {
    super(props);
    this.state = { error: null };
  }

  static getDerivedStateFromError(error) {
    return { error };
  }

  render() {
    if (this.state.error) {
      return (
        <ErrorBox
          error={this.state.error}
          hint={this.props.hint ?? "Check the address and the filters, or go back to the previous view."}
        />
      );
    }
    return this.props.children;
  }
}

export function Section({ title, actions, children, id }) {
  return (
    <section className="card" aria-labelledby={id}>
      <header className="card-head">
        <h2 id={id}>{title}</h2>
        {actions ? <div className="card-actions">{actions}</div> : null}
      </header>
      {children}
    </section>
  );
}

/** The URL if it is http(s): links that agents wrote may be anything else (data:, file:, ...). */
export function safeUrl(text) {
  if (typeof text !== "string") return null;
  try {
    const url = new URL(text);
    return url.protocol === "https:" || url.protocol === "http:" ? url : null;
  } catch {
    return null;
  }
}

/** A link to what an agent produced: a GitHub pull request as "PR #123", else its host and path. */
export function ExternalLink({ href, children }) {
  const url = safeUrl(href);
  if (!url) return href ? <code title="not an http(s) link">{String(href).slice(0, 60)}</code> : <span className="muted">—</span>;
  const pr = url.hostname === "github.com" ? /\/pull\/(\d+)/.exec(url.pathname) : null;
  return (
    <a href={url.href} target="_blank" rel="noreferrer noopener" title={url.href}>
      {children ?? (pr ? `PR #${pr[1]}` : `${url.host}${url.pathname}`.slice(0, 48))}
    </a>
  );
}
