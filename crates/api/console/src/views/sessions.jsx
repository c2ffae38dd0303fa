// Sessions: every session newest first, or a user's by their most recent message; a session's
// page with its messages (a streaming message grows as its deltas arrive), work orders, agent
// state, artifacts, approvals and tool-call audit.
import { usePaginatedQuery, useQuery } from "convex/react";
import { Link, useParamsUpdater, useTitle } from "../router.jsx";
import { Empty, ExternalLink, Id, JsonBlock, Loading, RelTime, Section, Status } from "../ui.jsx";
import { ToolCalls } from "./run.jsx";

function SessionRows({ sessions }) {
  return (
    <div className="table-wrap">
      <table className="rows">
        <thead>
          <tr>
            <th>Title</th>
            <th>User</th>
            <th>Last message</th>
            <th>Created</th>
            <th>Session</th>
          </tr>
        </thead>
        <tbody>
          {sessions.map((s) => (
            <tr key={s._id} data-row data-session={s._id} className={s.deletedAt ? "deleted" : undefined}>
              <td>
                <Link to={`/sessions/${s._id}`} data-primary className="row-link">
                  {s.title}
                </Link>
                {s.deletedAt ? <span className="tag">deleted</span> : null}
              </td>
              <td>
                <Link to={`/sessions?user=${encodeURIComponent(s.userId)}`}>{s.userId}</Link>
              </td>
              <td>
                <RelTime ms={s.lastMessageAt} />
              </td>
              <td>
                <RelTime ms={s.createdAt} />
              </td>
              <td>
                <Id id={s._id} to={`/sessions/${s._id}`} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Paged({ path, args, empty }) {
  const { results, status, loadMore } = usePaginatedQuery(path, args, { initialNumItems: 50 });
  if (status === "LoadingFirstPage") return <Loading />;
  if (results.length === 0) return <Empty>{empty}</Empty>;
  return (
    <>
      <SessionRows sessions={results} />
      {status === "CanLoadMore" ? (
        <button type="button" className="more" onClick={() => loadMore(50)}>
          Load more
        </button>
      ) : null}
    </>
  );
}

export function SessionsView({ params }) {
  useTitle("Sessions");
  const user = params.get("user") ?? "";
  const update = useParamsUpdater("/sessions");
  return (
    <div className="view">
      <header className="view-head">
        <h1>Sessions</h1>
        <form
          className="filters"
          onSubmit={(e) => {
            e.preventDefault();
            update({ user: new FormData(e.currentTarget).get("user").trim() });
          }}
        >
          <label>
            User id
            <input data-filter name="user" defaultValue={user} key={user} placeholder="every user" />
          </label>
          <button type="submit">Show</button>
          {user ? (
            <button type="button" className="link-button" onClick={() => update({ user: "" })}>
              Every user
            </button>
          ) : null}
        </form>
      </header>
      <Section title={user ? `Sessions of ${user}, most recent message first` : "Every session, newest first"} id="sessions">
        {user ? (
          <Paged path="chatSessions:list" args={{ userId: user }} empty={`User ${user} has no session.`} />
        ) : (
          <Paged
            path="_system/console/indexPage:default"
            args={{ table: "chat_sessions", index: "by_creation_time", order: "desc" }}
            empty="No session yet. Apps create them with chatSessions:create."
          />
        )}
      </Section>
    </div>
  );
}

function Message({ message }) {
  return (
    <li className={`message role-${message.role}${message.streaming ? " streaming" : ""}`} data-message={message._id}>
      <header>
        <span className="role">{message.role}</span>
        <RelTime ms={message.createdAt} />
        {message.streaming ? <span className="tag live">streaming</span> : null}
        {message.changes ? (
          <span className="tag">
            {message.changes.committed ? "changes committed" : "changes"} ({message.changes.files?.length ?? 0} files)
          </span>
        ) : null}
      </header>
      <div className="message-content">{message.content || <span className="muted">(empty)</span>}</div>
    </li>
  );
}

/** The latest messages (pages read newest first, shown oldest first), earlier ones on request. */
function Messages({ sessionId }) {
  const { results, status, loadMore } = usePaginatedQuery(
    "chatMessages:listBySession",
    { sessionId, order: "desc", includeDeleted: true },
    { initialNumItems: 100 },
  );
  if (status === "LoadingFirstPage") return <Loading />;
  if (results.length === 0) return <Empty>No message in this session yet.</Empty>;
  return (
    <>
      {status === "CanLoadMore" ? (
        <button type="button" className="more" onClick={() => loadMore(100)}>
          Earlier messages
        </button>
      ) : null}
      <ol className="messages">
        {[...results].reverse().map((m) => (
          <Message key={m._id} message={m} />
        ))}
      </ol>
    </>
  );
}

function WorkOrders({ sessionId }) {
  const orders = useQuery("workOrders:listBySession", { sessionId, limit: 100 });
  if (orders === undefined) return <Loading />;
  if (orders.length === 0) return <Empty>No work order from this session.</Empty>;
  return (
    <ul className="plain-list">
      {orders.map((o) => (
        <li key={o._id}>
          <Status status={o.status} /> <Link to={`/work-orders/${o._id}`}>{o.title ?? "untitled"}</Link>{" "}
          <RelTime ms={o.updatedAt} />
        </li>
      ))}
    </ul>
  );
}

function AgentState({ sessionId }) {
  const agent = useQuery("agentSessions:getBySession", { sessionId });
  if (agent === undefined) return <Loading />;
  if (agent === null) return <Empty>No agent state recorded (agentSessions:upsert).</Empty>;
  return (
    <dl className="facts">
      <div>
        <dt>Phase</dt>
        <dd>
          <Status status={agent.phase} />
        </dd>
      </div>
      <div>
        <dt>SDK session</dt>
        <dd>
          <code>{agent.sdkSessionId}</code>
        </dd>
      </div>
      <div>
        <dt>Mode</dt>
        <dd>{agent.mode ?? "—"}</dd>
      </div>
      <div>
        <dt>Updated</dt>
        <dd>
          <RelTime ms={agent.updatedAt} />
        </dd>
      </div>
      {agent.plan !== undefined ? (
        <div className="wide">
          <dt>Plan</dt>
          <dd>
            <JsonBlock value={agent.plan} />
          </dd>
        </div>
      ) : null}
    </dl>
  );
}

function SessionToolCalls({ sessionId }) {
  const calls = useQuery("toolCalls:listBySession", { sessionId, limit: 1000, order: "desc" });
  if (calls === undefined) return <Loading />;
  return <ToolCalls calls={[...calls].reverse()} />;
}

function SessionArtifacts({ sessionId }) {
  const artifacts = useQuery("artifacts:listBySession", { sessionId });
  if (artifacts === undefined) return <Loading />;
  if (artifacts.length === 0) return <Empty>No artifact.</Empty>;
  return (
    <ul className="plain-list">
      {artifacts.map((a) => (
        <li key={a._id}>
          <span className={`artifact-type artifact-${a.type}`}>{a.type}</span> {a.label ?? ""}{" "}
          {a.url ? <ExternalLink href={a.url} /> : null}{" "}
          <RelTime ms={a.createdAt} />
        </li>
      ))}
    </ul>
  );
}

export function SessionView({ sessionId }) {
  const session = useQuery("chatSessions:get", { sessionId, includeDeleted: true });
  useTitle(session?.title ? `Session: ${session.title}` : "Session");
  if (session === undefined) return <Loading />;
  if (session === null) {
    return (
      <Empty>
        There is no session <code>{sessionId}</code>. <Link to="/sessions">Back to the sessions</Link>.
      </Empty>
    );
  }
  return (
    <div className="view">
      <header className="view-head">
        <div>
          <div className="crumbs">
            <Link to="/sessions">Sessions</Link> /{" "}
            <Link to={`/sessions?user=${encodeURIComponent(session.userId)}`}>{session.userId}</Link> /
          </div>
          <h1>
            {session.title} {session.deletedAt ? <span className="tag">deleted</span> : null}
          </h1>
        </div>
        <Id id={session._id} />
      </header>
      <div className="columns wide-left">
        <Section title="Messages" id="messages">
          <Messages sessionId={sessionId} />
        </Section>
        <div>
          <Section title="Work orders" id="work-orders">
            <WorkOrders sessionId={sessionId} />
          </Section>
          <Section title="Agent" id="agent">
            <AgentState sessionId={sessionId} />
          </Section>
          <Section title="Artifacts" id="artifacts">
            <SessionArtifacts sessionId={sessionId} />
          </Section>
        </div>
      </div>
      <Section title="Tool calls" id="tool-calls">
        <SessionToolCalls sessionId={sessionId} />
      </Section>
    </div>
  );
}
