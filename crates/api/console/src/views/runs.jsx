// Runs: the dashboard's counters, the active and recent runs, and any status's runs filtered
// by repo and time range (through the runs' by_status index, newest update first).
import { usePaginatedQuery, useQuery } from "convex/react";
import { useMemo } from "react";
import { Link, ParamInput, hrefOf, useParamsUpdater, useTitle } from "../router.jsx";
import { Duration, Empty, ExternalLink, Loading, RelTime, Section, Status } from "../ui.jsx";

export const RUN_STATUSES = ["queued", "running", "succeeded", "failed", "canceled"];

const RANGES = [
  { value: "", label: "Any time" },
  { value: "1h", label: "Last hour", ms: 3600e3 },
  { value: "24h", label: "Last 24 hours", ms: 86400e3 },
  { value: "7d", label: "Last 7 days", ms: 7 * 86400e3 },
  { value: "30d", label: "Last 30 days", ms: 30 * 86400e3 },
];

function RunFilters({ status, repo, range }) {
  const update = useParamsUpdater("/runs");
  return (
    <form className="filters" onSubmit={(e) => e.preventDefault()} aria-label="Filter the runs">
      <label>
        Status
        <select value={status} onChange={(e) => update({ status: e.target.value })} name="status">
          <option value="">Active and recent</option>
          {RUN_STATUSES.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
      </label>
      <label>
        Repo
        <ParamInput data-filter name="repo" placeholder="owner/name" value={repo} onCommit={(text) => update({ repo: text.trim() })} />
      </label>
      <label>
        Updated
        <select value={range} onChange={(e) => update({ range: e.target.value })} name="range">
          {RANGES.map((r) => (
            <option key={r.value} value={r.value}>
              {r.label}
            </option>
          ))}
        </select>
      </label>
    </form>
  );
}

function Counters({ counts, status, repo, range }) {
  return (
    <div className="counters" role="list" aria-label="Runs by status">
      {RUN_STATUSES.map((s) => (
        <Link
          key={s}
          to={hrefOf("/runs", { status: s === status ? "" : s, repo, range })}
          className={`counter counter-${s}${s === status ? " selected" : ""}`}
          role="listitem"
          data-counter={s}
        >
          <span className="counter-value">{counts?.[s] ?? 0}</span>
          <span className="counter-label">{s}</span>
        </Link>
      ))}
    </div>
  );
}

function WorkOrderTitle({ workOrderId, known }) {
  const order = useQuery("workOrders:get", known === undefined ? { workOrderId } : "skip");
  const title = known !== undefined ? known : order?.title;
  if (known === undefined && order === undefined) return <span className="muted">…</span>;
  return title ? <span>{title}</span> : <span className="muted">untitled work order</span>;
}

export function RunRows({ runs, titles }) {
  if (runs.length === 0) return null;
  return (
    <div className="table-wrap">
      <table className="rows">
        <thead>
          <tr>
            <th>Status</th>
            <th>Work order</th>
            <th>Repo</th>
            <th>Branch</th>
            <th>Started</th>
            <th>Duration</th>
            <th>PR</th>
          </tr>
        </thead>
        <tbody>
          {runs.map((run) => (
            <tr key={run._id} data-row data-run={run._id}>
              <td>
                <Status status={run.status} />
              </td>
              <td>
                <Link to={`/runs/${run._id}`} data-primary className="row-link">
                  <WorkOrderTitle workOrderId={run.workOrderId} known={titles?.get(run._id)} />
                </Link>
              </td>
              <td>{run.repo ?? <span className="muted">—</span>}</td>
              <td>{run.branch ? <code>{run.branch}</code> : <span className="muted">—</span>}</td>
              <td>
                <RelTime ms={run.startedAt ?? run.createdAt} />
              </td>
              <td>
                <Duration start={run.startedAt ?? run.createdAt} end={run.endedAt} />
              </td>
              <td>
                <ExternalLink href={run.prUrl} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function matches(run, repo, since) {
  return (!repo || (run.repo ?? "").toLowerCase().includes(repo.toLowerCase())) && (!since || run.updatedAt >= since);
}

function DashboardLists({ dashboard, repo, since }) {
  const active = dashboard.active.filter(({ run }) => matches(run, repo, since));
  const titles = new Map(dashboard.active.map(({ run, workOrderTitle }) => [run._id, workOrderTitle]));
  const recent = dashboard.recent.filter((run) => matches(run, repo, since));
  return (
    <>
      <Section title={`Active (${active.length})`} id="active-runs">
        {active.length ? (
          <RunRows runs={active.map(({ run }) => run)} titles={titles} />
        ) : (
          <Empty>No run is queued or running{repo || since ? " under these filters" : ""}. Runs start when a worker calls <code>runs:start</code>.</Empty>
        )}
      </Section>
      <Section title={`Recently ended (${recent.length})`} id="recent-runs">
        {recent.length ? (
          <RunRows runs={recent} />
        ) : (
          <Empty>No run has ended{repo || since ? " under these filters" : " yet"}.</Empty>
        )}
      </Section>
    </>
  );
}

function RunsOfStatus({ status, repo, since }) {
  const args = {
    table: "runs",
    index: "by_status",
    eq: [status],
    order: "desc",
    ...(since ? { lower: { value: since, inclusive: true } } : {}),
  };
  const { results, status: loading, loadMore } = usePaginatedQuery("_system/console/indexPage:default", args, {
    initialNumItems: 50,
  });
  const runs = results.filter((run) => matches(run, repo, since));
  // The repo filter is applied to the pages read so far: more pages may hold matches.
  const more = loading === "CanLoadMore";
  return (
    <Section title={`Runs ${status}`} id="status-runs">
      {loading === "LoadingFirstPage" ? <Loading /> : null}
      {loading !== "LoadingFirstPage" && runs.length === 0 ? (
        <Empty>
          No {status} run{repo ? ` in a repo matching “${repo}”` : ""}
          {since ? " in this time range" : ""}
          {more ? ` among the ${results.length} most recently updated: load more to look further` : ""}.{" "}
          <Link to="/runs">Show the active and recent runs</Link>.
        </Empty>
      ) : (
        <RunRows runs={runs} />
      )}
      {loading === "CanLoadMore" ? (
        <button type="button" className="more" onClick={() => loadMore(50)}>
          Load more
        </button>
      ) : null}
    </Section>
  );
}

export function RunsView({ params }) {
  useTitle("Runs");
  const status = RUN_STATUSES.includes(params.get("status")) ? params.get("status") : "";
  const repo = params.get("repo") ?? "";
  const range = RANGES.find((r) => r.value === (params.get("range") ?? "")) ?? RANGES[0];
  // Fixed when the range is chosen: a bound that moved with the clock would change the
  // subscription's arguments, and drop the pages loaded, every time it moved.
  const since = useMemo(() => (range.ms ? Date.now() - range.ms : undefined), [range.ms]);
  const dashboard = useQuery("runs:getDashboard", { limit: 50 });
  return (
    <div className="view">
      <header className="view-head">
        <h1>Runs</h1>
        <RunFilters status={status} repo={repo} range={range.value} />
      </header>
      {dashboard === undefined ? <Loading /> : <Counters counts={dashboard.counts} status={status} repo={repo} range={range.value} />}
      {status ? (
        <RunsOfStatus status={status} repo={repo} since={since} />
      ) : dashboard === undefined ? null : (
        <DashboardLists dashboard={dashboard} repo={repo} since={since} />
      )}
    </div>
  );
}
