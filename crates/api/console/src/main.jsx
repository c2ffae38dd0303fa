// The console's shell: sign-in, the one live client, navigation, the connection indicator and
// the keyboard shortcuts. Every view reads through the Convex sync protocol, so what it shows
// follows the database without reloading or polling.
import { ConvexProvider, ConvexReactClient, useConvexConnectionState, useQuery } from "convex/react";
import { StrictMode, useEffect, useMemo, useState } from "react";
import { createRoot } from "react-dom/client";
import { Link, navigate, useLocation } from "./router.jsx";
import { ErrorBoundary, Loading, SchemaContext } from "./ui.jsx";
import { Session, signIn, signOut, startSession } from "./session.js";
import { RunsView } from "./views/runs.jsx";
import { RunView } from "./views/run.jsx";
import { WorkOrdersView, WorkOrderView } from "./views/workOrders.jsx";
import { ApprovalsView } from "./views/approvals.jsx";
import { SessionsView, SessionView } from "./views/sessions.jsx";
import { DataView } from "./views/data.jsx";
import { FunctionsView } from "./views/functions.jsx";
import { LogsView } from "./views/logs.jsx";

/** The views in the order of the navigation; the key is the shortcut. */
const VIEWS = [
  { path: "runs", label: "Runs", key: "1" },
  { path: "work-orders", label: "Work orders", key: "2" },
  { path: "approvals", label: "Approvals", key: "3" },
  { path: "sessions", label: "Sessions", key: "4" },
  { path: "data", label: "Data", key: "5" },
  { path: "functions", label: "Functions", key: "6" },
  { path: "logs", label: "Logs", key: "7" },
];

function Routes({ segments, params }) {
  const [view = "runs", id, sub] = segments;
  switch (view) {
    case "runs":
      return id ? <RunView runId={id} /> : <RunsView params={params} />;
    case "work-orders":
      return id ? <WorkOrderView workOrderId={id} /> : <WorkOrdersView params={params} />;
    case "approvals":
      return <ApprovalsView params={params} />;
    case "sessions":
      return id ? <SessionView sessionId={id} /> : <SessionsView params={params} />;
    case "data":
      return <DataView table={id} documentId={sub} params={params} />;
    case "functions":
      return <FunctionsView path={id} />;
    case "logs":
      return <LogsView params={params} />;
    default:
      return (
        <div className="empty">
          There is no view named “{view}”. <Link to="/runs">Go to the runs</Link>.
        </div>
      );
  }
}

/** Live, reconnecting or never connected: said in words, not only by a colour. */
function ConnectionIndicator() {
  const state = useConvexConnectionState();
  const [kind, text] = state.isWebSocketConnected
    ? ["live", "Live"]
    : state.hasEverConnected
      ? ["reconnecting", `Reconnecting${state.connectionRetries > 0 ? ` (attempt ${state.connectionRetries + 1})` : ""}…`]
      : ["connecting", "Connecting…"];
  return (
    <div className={`connection connection-${kind}`} role="status" aria-live="polite" data-connection={kind}>
      <span className="dot" aria-hidden="true" />
      {text}
      {kind === "reconnecting" ? <span className="hint"> what you see may be out of date</span> : null}
    </div>
  );
}

function useShortcuts() {
  const [help, setHelp] = useState(false);
  useEffect(() => {
    let pendingG = false;
    const onKey = (event) => {
      const target = event.target;
      const typing =
        target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
      if (event.key === "Escape") {
        setHelp(false);
        if (typing) target.blur();
        return;
      }
      if (typing || event.metaKey || event.ctrlKey || event.altKey) return;
      const view = VIEWS.find((v) => v.key === event.key);
      if (view) {
        event.preventDefault();
        navigate(`/${view.path}`);
      } else if (event.key === "?") {
        setHelp((shown) => !shown);
      } else if (event.key === "/") {
        const filter = document.querySelector("[data-filter]");
        if (filter) {
          event.preventDefault();
          filter.focus();
        }
      } else if (event.key === "j" || event.key === "k") {
        // Moves between the rows of the view's main list (their links are focusable).
        const rows = [...document.querySelectorAll("[data-row] a[data-primary]")];
        if (rows.length === 0) return;
        const at = rows.indexOf(document.activeElement);
        const next = event.key === "j" ? Math.min(rows.length - 1, at + 1) : Math.max(0, at - 1);
        rows[at < 0 ? 0 : next].focus();
        event.preventDefault();
      } else if (event.key === "g") {
        pendingG = true;
        setTimeout(() => (pendingG = false), 800);
        return;
      } else if (pendingG && event.key === "h") {
        navigate("/runs");
      }
      pendingG = false;
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);
  return [help, setHelp];
}

function ShortcutHelp({ onClose }) {
  return (
    <div className="overlay" role="dialog" aria-modal="true" aria-label="Keyboard shortcuts" onClick={onClose}>
      <div className="dialog" onClick={(e) => e.stopPropagation()}>
        <h2>Keyboard shortcuts</h2>
        <dl className="shortcuts">
          {VIEWS.map((v) => (
            <div key={v.key}>
              <dt>
                <kbd>{v.key}</kbd>
              </dt>
              <dd>{v.label}</dd>
            </div>
          ))}
          <div>
            <dt>
              <kbd>j</kbd> <kbd>k</kbd>
            </dt>
            <dd>Next and previous row</dd>
          </div>
          <div>
            <dt>
              <kbd>/</kbd>
            </dt>
            <dd>Focus the filter</dd>
          </div>
          <div>
            <dt>
              <kbd>Esc</kbd>
            </dt>
            <dd>Leave a field, close this</dd>
          </div>
        </dl>
        <button type="button" onClick={onClose} autoFocus>
          Close
        </button>
      </div>
    </div>
  );
}

/** Reads the schema once (it is fixed for a binary) for id links and the data browser. */
function WithSchema({ children }) {
  const tables = useQuery("_system/console/schema:default", {});
  const value = useMemo(() => {
    const list = tables ?? [];
    return {
      tables: list,
      byName: new Map(list.map((t) => [t.name, t])),
      byNumber: new Map(list.map((t) => [t.number, t])),
    };
  }, [tables]);
  if (tables === undefined) return <Loading what="Connecting to the deployment" />;
  return <SchemaContext.Provider value={value}>{children}</SchemaContext.Provider>;
}

function Shell({ session }) {
  const { segments, params } = useLocation();
  const [help, setHelp] = useShortcuts();
  const current = segments[0] ?? "runs";
  return (
    <div className="shell">
      <a className="skip" href="#main">
        Skip to the content
      </a>
      <header className="topbar">
        <Link to="/runs" className="brand">
          Jangar
        </Link>
        <nav aria-label="Views" className="nav">
          {VIEWS.map((v) => (
            <Link
              key={v.path}
              to={`/${v.path}`}
              className={current === v.path ? "active" : undefined}
              aria-current={current === v.path ? "page" : undefined}
              title={`${v.label} (${v.key})`}
            >
              {v.label}
            </Link>
          ))}
        </nav>
        <div className="topbar-end">
          <ConnectionIndicator />
          <span className="whoami" title={session.open ? "No admin key is needed here" : "Signed in with an admin key"}>
            {session.open ? "open development mode" : "admin"}
          </span>
          {session.open ? null : (
            <button type="button" className="link-button" onClick={signOut}>
              Sign out
            </button>
          )}
          <button type="button" className="link-button" onClick={() => setHelp(true)} aria-label="Keyboard shortcuts">
            ?
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <ErrorBoundary hint="The deployment refused the console's first query: sign out and in again, or reload.">
          <WithSchema>
            {/* Keyed by the view's path, not its filters: typing in a filter keeps the view. */}
            <ErrorBoundary key={segments.length ? segments.join("/") : "runs"}>
              <Routes segments={segments} params={params} />
            </ErrorBoundary>
          </WithSchema>
        </ErrorBoundary>
      </main>
      {help ? <ShortcutHelp onClose={() => setHelp(false)} /> : null}
    </div>
  );
}

function SignIn({ onSignedIn, problem }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState(problem);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onSignedIn(await signIn(key.trim()));
    } catch (e) {
      setError(e.message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="signin">
      <form onSubmit={submit} className="card">
        <h1>Jangar console</h1>
        <p>
          This deployment needs an admin key: one printed by <code>jangar keys generate</code>, or the one given to the
          server in <code>JANGAR_ADMIN_KEY</code>.
        </p>
        <label htmlFor="admin-key">Admin key</label>
        <input
          id="admin-key"
          name="admin-key"
          type="password"
          autoComplete="off"
          autoFocus
          value={key}
          onChange={(e) => setKey(e.target.value)}
        />
        {error ? (
          <div className="error-box" role="alert">
            {error}
          </div>
        ) : null}
        <button type="submit" disabled={busy || key.trim() === ""}>
          {busy ? "Checking…" : "Sign in"}
        </button>
        <p className="hint">The key stays in this tab's session storage and is forgotten when the tab closes.</p>
      </form>
    </div>
  );
}

function App() {
  const [state, setState] = useState({ phase: "starting" });
  useEffect(() => {
    startSession().then(
      (session) => setState(session ? { phase: "ready", session } : { phase: "signin" }),
      (error) => setState({ phase: "signin", problem: error.message }),
    );
  }, []);
  const client = useMemo(() => {
    if (state.phase !== "ready") return null;
    const client = new ConvexReactClient(window.location.origin, { skipConvexDeploymentUrlCheck: true });
    if (state.session.adminKey) client.setAdminAuth(state.session.adminKey);
    return client;
  }, [state]);
  if (state.phase === "starting") return <Loading what="Starting" />;
  if (state.phase === "signin") {
    return <SignIn problem={state.problem} onSignedIn={(session) => setState({ phase: "ready", session })} />;
  }
  return (
    <Session.Provider value={state.session}>
      <ConvexProvider client={client}>
        <Shell session={state.session} />
      </ConvexProvider>
    </Session.Provider>
  );
}

createRoot(document.getElementById("root")).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
