// Logs: every function call the server finished, as `npx convex logs` sees them: the view
// long-polls the same /api/stream_function_logs, so a call shows up as soon as it ends.
import { useEffect, useState } from "react";
import { ParamInput, useParamsUpdater, useTitle } from "../router.jsx";
import { Empty, RelTime, formatDuration } from "../ui.jsx";
import { adminHeaders, useSession } from "../session.js";

/** Entries kept in the page; older ones scroll out. */
const KEPT = 2000;

function useFunctionLog() {
  const session = useSession();
  const [log, setLog] = useState({ entries: [], problem: null });
  useEffect(() => {
    const controller = new AbortController();
    let cursor = 0;
    (async () => {
      while (!controller.signal.aborted) {
        try {
          const response = await fetch(`/api/stream_function_logs?cursor=${cursor}`, {
            headers: adminHeaders(session),
            signal: controller.signal,
          });
          if (!response.ok) {
            const body = await response.json().catch(() => ({}));
            throw new Error(`${body.code ?? `HTTP ${response.status}`}: ${body.message ?? "the log did not answer"}`);
          }
          const body = await response.json();
          cursor = body.newCursor;
          setLog((log) => ({ entries: log.entries.concat(body.entries).slice(-KEPT), problem: null }));
        } catch (error) {
          if (controller.signal.aborted) return;
          setLog((log) => ({ ...log, problem: error.message }));
          // The server may be restarting: try again shortly.
          await new Promise((resolve) => setTimeout(resolve, 2000));
        }
      }
    })();
    return () => controller.abort();
  }, [session]);
  return log;
}

export function LogsView({ params }) {
  useTitle("Logs");
  const { entries, problem } = useFunctionLog();
  const update = useParamsUpdater("/logs");
  const text = params.get("q") ?? "";
  const outcome = params.get("outcome") ?? "";
  const kind = params.get("kind") ?? "";
  const system = params.get("system") === "1";
  const shown = entries
    .filter((e) => system || !e.identifier.startsWith("_system/"))
    .filter((e) => !text || e.identifier.toLowerCase().includes(text.toLowerCase()) || (e.error ?? "").toLowerCase().includes(text.toLowerCase()))
    .filter((e) => !outcome || (outcome === "failure") === (e.error !== undefined))
    .filter((e) => !kind || e.udfType === kind)
    .reverse();
  return (
    <div className="view">
      <header className="view-head">
        <h1>Logs</h1>
        <form className="filters" onSubmit={(e) => e.preventDefault()}>
          <label>
            Function or error
            <ParamInput data-filter name="q" value={text} onCommit={(q) => update({ q })} />
          </label>
          <label>
            Outcome
            <select name="outcome" value={outcome} onChange={(e) => update({ outcome: e.target.value })}>
              <option value="">any</option>
              <option value="success">succeeded</option>
              <option value="failure">failed</option>
            </select>
          </label>
          <label>
            Kind
            <select name="kind" value={kind} onChange={(e) => update({ kind: e.target.value })}>
              <option value="">any</option>
              <option value="Query">queries</option>
              <option value="Mutation">mutations</option>
              <option value="Action">actions</option>
            </select>
          </label>
          <label className="check">
            <input type="checkbox" checked={system} onChange={(e) => update({ system: e.target.checked ? "1" : "" })} />
            System functions (the CLI's, the console's)
          </label>
        </form>
      </header>
      {problem ? (
        <div className="error-box" role="alert">
          The log is not reachable ({problem}); trying again.
        </div>
      ) : null}
      {shown.length === 0 ? (
        <Empty>No call {entries.length ? "matches the filters" : "has finished since the server started (it keeps the latest in memory)"}.</Empty>
      ) : (
        <div className="table-wrap">
          <table className="rows logs">
            <thead>
              <tr>
                <th>When</th>
                <th>Kind</th>
                <th>Function</th>
                <th>Took</th>
                <th>Caller</th>
                <th>Outcome</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((e) => (
                <tr key={e.executionId} data-row data-log={e.identifier} className={e.error ? "failed" : undefined}>
                  <td>
                    <RelTime ms={e.timestamp * 1000} />
                  </td>
                  <td>
                    <span className={`kind kind-${e.udfType}`}>{e.udfType}</span>
                  </td>
                  <td>
                    <code>{e.identifier.replace(/\.js:/, ":")}</code>
                  </td>
                  <td>{formatDuration(e.executionTime * 1000)}</td>
                  <td>{e.caller}</td>
                  <td>
                    {e.error ? (
                      <span className="error-message">{e.error}</span>
                    ) : (
                      <span className="ok">{e.cachedResult ? "ok (cached)" : "ok"}</span>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
