// The approvals inbox: every request still stored as pending, oldest first, with its plan;
// approve or reject with a reason (`approvalRequests:decide`). A request past its expiresAt is
// marked expired (the server reads it so and refuses a decision). Below, the latest decisions.
import { useMutation, usePaginatedQuery } from "convex/react";
import { useState } from "react";
import { Link, useTitle } from "../router.jsx";
import { Empty, ErrorBox, Id, Loading, RelTime, Section, Status, useNow } from "../ui.jsx";
import { useSession } from "../session.js";

const byStatus = (status, order) => ({ table: "approval_requests", index: "by_status", eq: [status], order });

function Decide({ request }) {
  const decide = useMutation("approvalRequests:decide");
  const session = useSession();
  const [reason, setReason] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = (decision) => async () => {
    setBusy(true);
    setError(null);
    try {
      await decide({
        approvalRequestId: request._id,
        decision,
        decidedBy: session.open ? "console" : "console (admin)",
        ...(reason.trim() ? { reason: reason.trim() } : {}),
      });
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="decide">
      <label>
        Reason
        <input name="reason" value={reason} onChange={(e) => setReason(e.target.value)} placeholder="optional" />
      </label>
      <button type="button" disabled={busy} onClick={submit("approved")} data-action="approve">
        Approve
      </button>
      <button type="button" className="danger" disabled={busy} onClick={submit("rejected")} data-action="reject">
        Reject
      </button>
      {error ? <ErrorBox error={error} /> : null}
    </div>
  );
}

function Request({ request, now }) {
  const expired = typeof request.expiresAt === "number" && request.expiresAt <= now;
  return (
    <li className={`approval${expired ? " expired" : ""}`} data-row data-approval={request._id}>
      <header>
        <Status status={expired ? "expired" : request.status} />
        <span>
          asked <RelTime ms={request.createdAt} />
        </span>
        {typeof request.expiresAt === "number" ? (
          <span className={expired ? "warn" : "muted"}>
            {expired ? "expired" : "expires"} <RelTime ms={request.expiresAt} />
          </span>
        ) : null}
        <span>
          session{" "}
          <Link to={`/sessions/${request.sessionId}`} data-primary>
            {request.sessionId.slice(0, 8)}…
          </Link>
        </span>
        {request.runId ? (
          <span>
            run <Id id={request.runId} to={`/runs/${request.runId}`} />
          </span>
        ) : null}
        {request.workOrderId ? (
          <span>
            work order <Id id={request.workOrderId} to={`/work-orders/${request.workOrderId}`} />
          </span>
        ) : null}
      </header>
      <pre className="plan">{request.planContent}</pre>
      {request.status === "pending" && !expired ? <Decide request={request} /> : null}
      {request.status !== "pending" ? (
        <div className="decision">
          {request.decidedBy ? `by ${request.decidedBy}` : null} <RelTime ms={request.decidedAt} />
          {request.reason ? <q>{request.reason}</q> : null}
        </div>
      ) : null}
    </li>
  );
}

/** `decided`: the latest decisions first (the index orders by request time, so sort what is loaded). */
function RequestList({ args, empty, decided = false }) {
  const now = useNow(5000);
  const { results, status, loadMore } = usePaginatedQuery("_system/console/indexPage:default", args, { initialNumItems: 50 });
  if (status === "LoadingFirstPage") return <Loading />;
  if (results.length === 0) return <Empty>{empty}</Empty>;
  const shown = decided ? [...results].sort((a, b) => (b.decidedAt ?? 0) - (a.decidedAt ?? 0)) : results;
  return (
    <>
      <ul className="approvals">
        {shown.map((r) => (
          <Request key={r._id} request={r} now={now} />
        ))}
      </ul>
      {status === "CanLoadMore" ? (
        <button type="button" className="more" onClick={() => loadMore(50)}>
          Load more
        </button>
      ) : null}
    </>
  );
}

export function ApprovalsView() {
  useTitle("Approvals");
  return (
    <div className="view">
      <header className="view-head">
        <h1>Approvals</h1>
      </header>
      <Section title="Waiting for a decision" id="pending">
        <RequestList
          args={byStatus("pending", "asc")}
          empty="Nothing waits for a decision. Agents ask with approvalRequests:create."
        />
      </Section>
      <div className="columns">
        <Section title="Approved lately" id="approved">
          <RequestList args={byStatus("approved", "desc")} decided empty="No request approved yet." />
        </Section>
        <Section title="Rejected lately" id="rejected">
          <RequestList args={byStatus("rejected", "desc")} decided empty="No request rejected yet." />
        </Section>
      </div>
    </div>
  );
}
