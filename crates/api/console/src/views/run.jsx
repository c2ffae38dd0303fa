// Run detail: the steps as bars on a time axis (growing while the run is live), the events in
// seq order, the artifacts, the tool calls made during the run, and the Temporal identifiers.
import { useQuery } from "convex/react";
import { Link, useTitle } from "../router.jsx";
import {
  CopyButton,
  Duration,
  Empty,
  ExternalLink,
  Id,
  JsonBlock,
  Loading,
  RelTime,
  Section,
  Status,
  formatDuration,
  useNow,
} from "../ui.jsx";

function Timeline({ run, steps }) {
  const clock = useNow(1000);
  const live = typeof run.endedAt !== "number";
  // A step left open when its run ended (a failed run, say) ends with the run, not with the clock.
  const now = live ? clock : run.endedAt;
  const starts = steps.map((s) => s.startedAt).filter((t) => typeof t === "number");
  const t0 = Math.min(run.startedAt ?? run.createdAt, ...starts);
  const ends = steps.map((s) => s.endedAt ?? (s.startedAt ? now : undefined)).filter((t) => typeof t === "number");
  const t1 = Math.max(live ? now : run.endedAt, ...ends, t0 + 1000);
  const span = t1 - t0;
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => ({ f, label: `+${formatDuration(f * span)}` }));
  if (steps.length === 0) {
    return <Empty>No step yet. Steps appear here as the worker reports them with <code>steps:appendOrUpdate</code>.</Empty>;
  }
  return (
    <div className="timeline" role="list" aria-label="Steps on a time axis">
      <div className="timeline-axis" aria-hidden="true">
        {ticks.map((t) => (
          <span key={t.f} style={{ left: `${t.f * 100}%` }}>
            {t.label}
          </span>
        ))}
      </div>
      {steps.map((step) => {
        const start = step.startedAt;
        const end = step.endedAt ?? (start ? now : undefined);
        const left = start ? ((start - t0) / span) * 100 : 0;
        const width = start ? Math.max(0.6, ((end - start) / span) * 100) : 0;
        const took = start ? formatDuration(end - start) : "not started";
        return (
          <div
            key={step._id}
            className={`timeline-row step-${step.status}`}
            role="listitem"
            data-step={step.name}
            title={`${step.name}: ${step.status}, ${took}${step.attempt > 1 ? `, attempt ${step.attempt}` : ""}`}
          >
            <div className="timeline-label">
              <span className="step-name">{step.name}</span>
              <span className="step-kind">{step.kind}</span>
              {step.attempt > 1 ? <span className="attempts">attempt {step.attempt}</span> : null}
            </div>
            <div className="timeline-track">
              {start ? (
                <div className="timeline-bar" style={{ left: `${left}%`, width: `${Math.min(width, 100 - left)}%` }}>
                  <span>{took}</span>
                </div>
              ) : (
                <div className="timeline-pending">pending</div>
              )}
            </div>
            <div className="timeline-status">
              <Status status={step.status} />
              {step.logUrl ? <ExternalLink href={step.logUrl}>log</ExternalLink> : null}
            </div>
          </div>
        );
      })}
    </div>
  );
}

function Events({ events }) {
  if (events.length === 0) return <Empty>No event yet.</Empty>;
  return (
    <ol className="events">
      {events.map((event) => (
        <li key={event._id} data-event-seq={event.seq}>
          <span className="seq">#{event.seq}</span>
          <span className={`event-type event-${event.type}`}>{event.type}</span>
          <RelTime ms={event.createdAt} />
          {event.data !== undefined ? (
            typeof event.data?.text === "string" ? (
              <span className="event-text">{event.data.text}</span>
            ) : event.type === "state_change" && event.data?.from !== undefined ? (
              <span className="transition">
                <Status status={event.data.from} /> → <Status status={event.data.to} />
              </span>
            ) : (
              <details>
                <summary>data</summary>
                <JsonBlock value={event.data} />
              </details>
            )
          ) : null}
        </li>
      ))}
    </ol>
  );
}

function Artifacts({ artifacts }) {
  if (artifacts.length === 0) return <Empty>No artifact yet (pull requests, diffs, logs, reports).</Empty>;
  return (
    <ul className="artifacts">
      {artifacts.map((a) => (
        <li key={a._id}>
          <span className={`artifact-type artifact-${a.type}`}>{a.type}</span>
          <span>{a.label ?? <span className="muted">no label</span>}</span>
          {a.url ? <ExternalLink href={a.url} /> : null}
          {a.status ? <Status status={a.status} /> : null}
          <RelTime ms={a.createdAt} />
          {a.content ? (
            <details>
              <summary>content ({a.content.length} characters)</summary>
              <pre className="content">{a.content}</pre>
            </details>
          ) : null}
        </li>
      ))}
    </ul>
  );
}

export function ToolCalls({ calls, emptyText = "No tool call recorded." }) {
  if (calls.length === 0) return <Empty>{emptyText}</Empty>;
  return (
    <div className="table-wrap">
      <table className="rows">
        <thead>
          <tr>
            <th>Tool</th>
            <th>Status</th>
            <th>When</th>
            <th>Took</th>
            <th>Input and output</th>
          </tr>
        </thead>
        <tbody>
          {calls.map((call) => (
            <tr key={call._id} data-tool-call={call.toolName}>
              <td>
                <code>{call.toolName}</code>
              </td>
              <td>
                <Status status={call.status} />
              </td>
              <td>
                <RelTime ms={call.createdAt} />
              </td>
              <td>{typeof call.durationMs === "number" ? formatDuration(call.durationMs) : <Duration start={call.createdAt} />}</td>
              <td>
                <details>
                  <summary>input{call.output !== undefined ? " and output" : ""}</summary>
                  <JsonBlock value={{ input: call.input, output: call.output }} />
                </details>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function RunToolCalls({ sessionId, runId }) {
  // The session's latest 1,000 calls, newest first from the server, shown oldest first.
  const calls = useQuery("toolCalls:listBySession", sessionId ? { sessionId, limit: 1000, order: "desc" } : "skip");
  if (!sessionId) return <Empty>This run's work order has no session.</Empty>;
  if (calls === undefined) return <Loading />;
  const ofRun = calls.filter((c) => c.runId === runId).reverse();
  return <ToolCalls calls={ofRun} emptyText="No tool call recorded for this run." />;
}

export function RunView({ runId }) {
  const timeline = useQuery("runs:getTimeline", { runId });
  useTitle(timeline?.workOrder?.title ? `Run: ${timeline.workOrder.title}` : "Run");
  if (timeline === undefined) return <Loading what="Loading the run" />;
  if (timeline === null) {
    return (
      <Empty>
        There is no run <code>{runId}</code>. <Link to="/runs">Back to the runs</Link>.
      </Empty>
    );
  }
  const { run, workOrder, steps, artifacts, events } = timeline;
  return (
    <div className="view">
      <header className="view-head">
        <div>
          <div className="crumbs">
            <Link to="/runs">Runs</Link> /
          </div>
          <h1>
            {workOrder?.title ?? "Run"} <Status status={run.status} />
          </h1>
        </div>
      </header>
      <dl className="facts">
        <div>
          <dt>Run</dt>
          <dd>
            <Id id={run._id} />
          </dd>
        </div>
        <div>
          <dt>Work order</dt>
          <dd>{workOrder ? <Id id={workOrder._id} to={`/work-orders/${workOrder._id}`} /> : "—"}</dd>
        </div>
        <div>
          <dt>Temporal workflow</dt>
          <dd>
            <code data-workflow-id>{run.temporalWorkflowId}</code>
            <CopyButton text={run.temporalWorkflowId} label="Copy workflow id" />
            {run.temporalRunId ? <span className="muted"> run {run.temporalRunId}</span> : null}
          </dd>
        </div>
        <div>
          <dt>Task queue / worker</dt>
          <dd>
            {run.taskQueue ?? "—"} / {run.workerId ?? "—"}
          </dd>
        </div>
        <div>
          <dt>Repo and branch</dt>
          <dd>
            {run.repo ?? "—"} {run.branch ? <code>{run.branch}</code> : null}
          </dd>
        </div>
        <div>
          <dt>Started</dt>
          <dd>
            <RelTime ms={run.startedAt ?? run.createdAt} /> · <Duration start={run.startedAt ?? run.createdAt} end={run.endedAt} />
          </dd>
        </div>
        <div>
          <dt>Result</dt>
          <dd>
            <ExternalLink href={run.prUrl} /> {run.commitSha ? <code>{run.commitSha.slice(0, 12)}</code> : null}
          </dd>
        </div>
      </dl>
      {run.failureReason !== undefined ? (
        <div className="error-box" role="alert">
          <strong>Failed:</strong> <JsonBlock value={run.failureReason} />
        </div>
      ) : null}
      <Section title={`Timeline (${steps.length} steps)`} id="timeline">
        <Timeline run={run} steps={steps} />
      </Section>
      <div className="columns">
        <Section title={`Events (${events.length})`} id="events">
          <Events events={events} />
        </Section>
        <Section title={`Artifacts (${artifacts.length})`} id="artifacts">
          <Artifacts artifacts={artifacts} />
        </Section>
      </div>
      <Section title="Tool calls" id="tool-calls">
        <RunToolCalls sessionId={workOrder?.sessionId} runId={run._id} />
      </Section>
    </div>
  );
}
