// Work orders: a board with a column per status, and a work order's page with its runs and
// events. The operator's transitions call the catalogue's mutations as any client does
// (submit a draft, cancel, retry a failed or canceled order as a new one), and a refusal is
// shown as the server said it.
import { useMutation, useQuery } from "convex/react";
import { useState } from "react";
import { Link, ParamInput, useParamsUpdater, useTitle } from "../router.jsx";
import { Empty, ErrorBox, ExternalLink, Id, JsonBlock, Loading, RelTime, Section, Status } from "../ui.jsx";
import { RunRows } from "./runs.jsx";

export const WORK_ORDER_STATUSES = ["draft", "submitted", "accepted", "running", "succeeded", "failed", "canceled"];
const FINAL = new Set(["succeeded", "failed", "canceled"]);

/** The fields a retry copies into the new work order. */
const RETRIED_FIELDS = [
  "sessionId",
  "title",
  "prompt",
  "summary",
  "workflowType",
  "workflowArgs",
  "githubIssueUrl",
  "requestedBy",
  "targetRepo",
  "targetBranch",
];

function useTransitions(order) {
  const updateStatus = useMutation("workOrders:updateStatus");
  const create = useMutation("workOrders:create");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [created, setCreated] = useState(null);
  const run = (action) => async () => {
    setBusy(true);
    setError(null);
    try {
      const result = await action();
      if (typeof result === "string") setCreated(result);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const actions = [];
  if (order.status === "draft") {
    actions.push({ label: "Submit", run: run(() => updateStatus({ workOrderId: order._id, status: "submitted" })) });
  }
  if (!FINAL.has(order.status)) {
    actions.push({
      label: "Cancel",
      danger: true,
      run: run(() => updateStatus({ workOrderId: order._id, status: "canceled" })),
    });
  }
  if (order.status === "failed" || order.status === "canceled") {
    const copy = Object.fromEntries(RETRIED_FIELDS.filter((f) => order[f] !== undefined).map((f) => [f, order[f]]));
    actions.push({ label: "Retry as new", run: run(() => create({ ...copy, status: "submitted" })) });
  }
  return { actions, error, busy, created };
}

export function Transitions({ order }) {
  const { actions, error, busy, created } = useTransitions(order);
  return (
    <div className="transitions">
      {actions.map((a) => (
        <button
          type="button"
          key={a.label}
          className={a.danger ? "danger" : undefined}
          disabled={busy}
          onClick={a.run}
          data-action={a.label}
        >
          {a.label}
        </button>
      ))}
      {created ? (
        <span className="notice">
          Created <Link to={`/work-orders/${created}`}>the retry</Link>.
        </span>
      ) : null}
      {error ? <ErrorBox error={error} /> : null}
    </div>
  );
}

function Card({ order }) {
  return (
    <li className="wo-card" data-row data-work-order={order._id}>
      <Link to={`/work-orders/${order._id}`} data-primary className="wo-title">
        {order.title ?? <span className="muted">untitled</span>}
      </Link>
      <div className="wo-meta">
        {order.targetRepo ?? <span className="muted">no repo</span>}
        {order.targetBranch ? <code>{order.targetBranch}</code> : null}
        <RelTime ms={order.updatedAt} />
      </div>
      <Transitions order={order} />
    </li>
  );
}

function Column({ status, filter }) {
  const orders = useQuery("workOrders:listByStatus", { status, limit: 100 });
  const shown = orders?.filter(
    (o) => !filter || `${o.title ?? ""} ${o.targetRepo ?? ""}`.toLowerCase().includes(filter.toLowerCase()),
  );
  return (
    <section className="column" aria-label={`${status} work orders`} data-column={status}>
      <h2>
        <Status status={status} /> <span className="count">{shown ? shown.length : "…"}</span>
      </h2>
      {shown === undefined ? (
        <Loading />
      ) : shown.length === 0 ? (
        <Empty>None.</Empty>
      ) : (
        <ul className="wo-list">
          {shown.map((order) => (
            <Card key={order._id} order={order} />
          ))}
        </ul>
      )}
    </section>
  );
}

export function WorkOrdersView({ params }) {
  useTitle("Work orders");
  const update = useParamsUpdater("/work-orders");
  const filter = params.get("q") ?? "";
  const showFinal = params.get("final") !== "0";
  const statuses = WORK_ORDER_STATUSES.filter((s) => showFinal || !FINAL.has(s));
  return (
    <div className="view">
      <header className="view-head">
        <h1>Work orders</h1>
        <form className="filters" onSubmit={(e) => e.preventDefault()}>
          <label>
            Filter
            <ParamInput data-filter name="q" placeholder="title or repo" value={filter} onCommit={(q) => update({ q })} />
          </label>
          <label className="check">
            <input type="checkbox" checked={showFinal} onChange={(e) => update({ final: e.target.checked ? "" : "0" })} />
            Show finished
          </label>
        </form>
      </header>
      <p className="hint">The 100 most recently updated of each status.</p>
      <div className="board">
        {statuses.map((s) => (
          <Column key={s} status={s} filter={filter} />
        ))}
      </div>
    </div>
  );
}

export function WorkOrderView({ workOrderId }) {
  const order = useQuery("workOrders:get", { workOrderId });
  const runs = useQuery("runs:listByWorkOrder", { workOrderId, limit: 100 });
  const events = useQuery("_system/console/indexPage:default", {
    table: "events",
    index: "by_work_order",
    eq: [workOrderId],
    order: "desc",
    paginationOpts: { numItems: 200, cursor: null },
  });
  useTitle(order?.title ? `Work order: ${order.title}` : "Work order");
  if (order === undefined) return <Loading />;
  if (order === null) {
    return (
      <Empty>
        There is no work order <code>{workOrderId}</code> (or it is deleted). <Link to="/work-orders">Back to the board</Link>.
      </Empty>
    );
  }
  return (
    <div className="view">
      <header className="view-head">
        <div>
          <div className="crumbs">
            <Link to="/work-orders">Work orders</Link> /
          </div>
          <h1>
            {order.title ?? "Untitled work order"} <Status status={order.status} />
          </h1>
        </div>
        <Transitions order={order} />
      </header>
      <dl className="facts">
        <div>
          <dt>Work order</dt>
          <dd>
            <Id id={order._id} />
          </dd>
        </div>
        <div>
          <dt>Session</dt>
          <dd>
            <Id id={order.sessionId} to={`/sessions/${order.sessionId}`} />
          </dd>
        </div>
        <div>
          <dt>Workflow</dt>
          <dd>
            {order.workflowType ?? "—"} {order.workflowId ? <code>{order.workflowId}</code> : null}
          </dd>
        </div>
        <div>
          <dt>Target</dt>
          <dd>
            {order.targetRepo ?? "—"} {order.targetBranch ? <code>{order.targetBranch}</code> : null}
          </dd>
        </div>
        <div>
          <dt>Updated</dt>
          <dd>
            <RelTime ms={order.updatedAt} />
          </dd>
        </div>
        <div>
          <dt>Result</dt>
          <dd>
            <ExternalLink href={order.prUrl} /> {order.commitSha ? <code>{order.commitSha.slice(0, 12)}</code> : null}
          </dd>
        </div>
      </dl>
      {order.prompt || order.summary ? (
        <Section title="Prompt" id="prompt">
          <pre className="content">{order.prompt ?? order.summary}</pre>
        </Section>
      ) : null}
      {order.failureReason !== undefined ? (
        <div className="error-box">
          <strong>Failure:</strong> <JsonBlock value={order.failureReason} />
        </div>
      ) : null}
      <Section title="Runs" id="runs">
        {runs === undefined ? <Loading /> : runs.length ? <RunRows runs={runs} /> : <Empty>No run yet.</Empty>}
      </Section>
      <Section title="Events" id="events">
        {events === undefined ? (
          <Loading />
        ) : events.page.length === 0 ? (
          <Empty>No event.</Empty>
        ) : (
          <ol className="events">
            {/* The latest 200, shown oldest first. */}
            {[...events.page].reverse().map((e) => (
              <li key={e._id}>
                <span className={`event-type event-${e.type}`}>{e.type}</span> <RelTime ms={e.createdAt} />{" "}
                {e.data?.to ? (
                  <span className="transition">
                    <Status status={e.data.from} /> → <Status status={e.data.to} />
                  </span>
                ) : (
                  <JsonBlock value={e.data ?? null} />
                )}
              </li>
            ))}
          </ol>
        )}
      </Section>
    </div>
  );
}
