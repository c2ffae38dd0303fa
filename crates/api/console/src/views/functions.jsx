// Functions: the catalogue (the same spec `npx convex function-spec` prints), and a runner for
// any of its functions with a form built from the function's argument validator, as an admin
// or acting as a user. The result, or the error's code and message, as the server answered.
import { useQuery } from "convex/react";
import { useMemo, useState } from "react";
import { Link, useTitle } from "../router.jsx";
import { Empty, ErrorBox, JsonBlock, Loading, describeError } from "../ui.jsx";
import { httpClient, useSession } from "../session.js";
import { describe, literalWords, parseValue } from "../validators.js";

const pathOf = (identifier) => identifier.replace(/\.js:/, ":");

function FunctionList({ spec, selected }) {
  const [filter, setFilter] = useState("");
  const shown = spec.filter((f) => pathOf(f.identifier).toLowerCase().includes(filter.toLowerCase()));
  return (
    <nav className="function-list" aria-label="Functions">
      <input data-filter placeholder="Filter functions" value={filter} onChange={(e) => setFilter(e.target.value)} aria-label="Filter functions" />
      <ul>
        {shown.map((f) => {
          const path = pathOf(f.identifier);
          return (
            <li key={path} data-row>
              <Link to={`/functions/${encodeURIComponent(path)}`} data-primary className={path === selected ? "active" : undefined}>
                <span className={`kind kind-${f.functionType}`}>{f.functionType[0]}</span> {path}
              </Link>
            </li>
          );
        })}
      </ul>
      {shown.length === 0 ? <Empty>No function matches.</Empty> : null}
    </nav>
  );
}

function FieldInput({ name, field, value, onChange }) {
  const type = field.fieldType;
  const words = literalWords(type);
  const id = `arg-${name}`;
  let input;
  if (words || type.type === "boolean") {
    const options = words ?? ["true", "false"];
    input = (
      <select id={id} name={name} value={value} onChange={(e) => onChange(e.target.value)}>
        <option value="">{field.optional ? "— leave out —" : "— choose —"}</option>
        {options.map((w) => (
          <option key={w} value={w}>
            {w}
          </option>
        ))}
      </select>
    );
  } else if (["string", "id", "number", "bigint"].includes(type.type)) {
    input = <input id={id} name={name} value={value} onChange={(e) => onChange(e.target.value)} spellCheck={false} />;
  } else {
    input = (
      <textarea id={id} name={name} value={value} rows={3} onChange={(e) => onChange(e.target.value)} spellCheck={false} placeholder="JSON" />
    );
  }
  return (
    <div className="arg">
      <label htmlFor={id}>
        <code>{name}</code>
        {field.optional ? <span className="muted">?</span> : null} <span className="type">{describe(type)}</span>
      </label>
      {input}
    </div>
  );
}

/** The arguments object from the form's texts: empty optional fields are left out. */
function argsFromForm(fields, texts) {
  const args = {};
  for (const [name, field] of Object.entries(fields)) {
    const text = texts[name] ?? "";
    if (text === "") {
      if (!field.optional) throw new Error(`${name} is required.`);
      continue;
    }
    args[name] = parseValue(text, field.fieldType, name);
  }
  return args;
}

function Runner({ fn }) {
  const session = useSession();
  const path = pathOf(fn.identifier);
  const fields = fn.args?.type === "object" ? fn.args.value : {};
  const [texts, setTexts] = useState({});
  const [raw, setRaw] = useState(null);
  const [actingAs, setActingAs] = useState({ subject: "", issuer: "" });
  const [outcome, setOutcome] = useState(null);
  const [busy, setBusy] = useState(false);
  const run = async (event) => {
    event.preventDefault();
    setBusy(true);
    const started = performance.now();
    try {
      const args = raw !== null ? JSON.parse(raw) : argsFromForm(fields, texts);
      const identity = actingAs.subject.trim()
        ? { subject: actingAs.subject.trim(), issuer: actingAs.issuer.trim() || undefined }
        : undefined;
      const client = httpClient(session, identity);
      const call = fn.functionType === "Mutation" ? client.mutation : fn.functionType === "Action" ? client.action : client.query;
      const value = await call.call(client, path, args);
      setOutcome({ ok: true, value, ms: performance.now() - started });
    } catch (error) {
      setOutcome({ ok: false, error, ms: performance.now() - started });
    } finally {
      setBusy(false);
    }
  };
  const toggleRaw = () => {
    if (raw !== null) return setRaw(null);
    let current = {};
    try {
      current = argsFromForm(fields, texts);
    } catch {
      // Start from what parses; the JSON editor shows the rest to fill in.
    }
    setRaw(JSON.stringify(current, null, 2));
  };
  return (
    <form className="runner" onSubmit={run} aria-label={`Run ${path}`}>
      <h2>
        <span className={`kind kind-${fn.functionType}`}>{fn.functionType}</span> <code>{path}</code>
      </h2>
      <p className="hint">
        Returns <code>{describe(fn.returns)}</code>.{" "}
        {fn.functionType === "Mutation" ? "A mutation changes data: it runs for real." : "Runs once, not as a subscription."}
      </p>
      {raw === null ? (
        Object.keys(fields).length ? (
          Object.entries(fields).map(([name, field]) => (
            <FieldInput key={name} name={name} field={field} value={texts[name] ?? ""} onChange={(v) => setTexts({ ...texts, [name]: v })} />
          ))
        ) : (
          <p className="muted">No arguments.</p>
        )
      ) : (
        <textarea className="raw-args" name="raw-args" rows={8} value={raw} onChange={(e) => setRaw(e.target.value)} spellCheck={false} aria-label="Arguments as JSON" />
      )}
      <button type="button" className="link-button" onClick={toggleRaw}>
        {raw === null ? "Edit the arguments as JSON" : "Back to the form"}
      </button>
      <fieldset className="acting-as">
        <legend>Act as a user (optional)</legend>
        <label>
          subject
          <input name="acting-subject" value={actingAs.subject} onChange={(e) => setActingAs({ ...actingAs, subject: e.target.value })} placeholder="the user's id" />
        </label>
        <label>
          issuer
          <input name="acting-issuer" value={actingAs.issuer} onChange={(e) => setActingAs({ ...actingAs, issuer: e.target.value })} placeholder="optional" />
        </label>
      </fieldset>
      <button type="submit" disabled={busy} data-action="run">
        {busy ? "Running…" : "Run"}
      </button>
      {outcome ? <Outcome outcome={outcome} /> : null}
    </form>
  );
}

function Outcome({ outcome }) {
  if (outcome.ok) {
    return (
      <div className="outcome ok" data-outcome="success">
        <div className="hint">Succeeded in {Math.round(outcome.ms)} ms</div>
        <JsonBlock value={outcome.value ?? null} />
      </div>
    );
  }
  const { data } = describeError(outcome.error);
  return (
    <div className="outcome failed" data-outcome="error">
      <ErrorBox error={outcome.error} />
      {data ? <JsonBlock value={data} /> : null}
    </div>
  );
}

export function FunctionsView({ path }) {
  useTitle(path ? `Run ${path}` : "Functions");
  const spec = useQuery("_system/cli/modules:apiSpec", {});
  const sorted = useMemo(() => (spec ?? []).slice().sort((a, b) => a.identifier.localeCompare(b.identifier)), [spec]);
  if (spec === undefined) return <Loading />;
  const fn = path ? sorted.find((f) => pathOf(f.identifier) === path) : undefined;
  return (
    <div className="view">
      <header className="view-head">
        <h1>Functions</h1>
      </header>
      <div className="columns narrow-left">
        <FunctionList spec={sorted} selected={path} />
        <div>
          {fn ? (
            <Runner key={path} fn={fn} />
          ) : path ? (
            <Empty>There is no function {path}. Pick one from the list.</Empty>
          ) : (
            <Empty>Pick a function to run it. Queries read; mutations change data.</Empty>
          )}
        </div>
      </div>
    </div>
  );
}
