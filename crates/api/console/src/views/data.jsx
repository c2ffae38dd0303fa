// Data: every table, paged through any of its indexes (an equality prefix on its first fields,
// a range on the next, either order), soft-deleted documents on request, and any document by
// its id. Ids anywhere link to the documents they name.
import { useQuery } from "convex/react";
import { useState } from "react";
import { Link, hrefOf, navigate, useParamsUpdater, useTitle } from "../router.jsx";
import { Empty, ErrorBox, Id, JsonBlock, Loading, RelTime, Section, useSchema } from "../ui.jsx";
import { describe, fieldType, parseValue } from "../validators.js";

const PAGE_SIZES = [25, 50, 100];

function Tables() {
  const { tables } = useSchema();
  useTitle("Data");
  return (
    <div className="view">
      <header className="view-head">
        <h1>Data</h1>
        <OpenById />
      </header>
      <div className="table-wrap">
        <table className="rows">
          <thead>
            <tr>
              <th>Table</th>
              <th>Indexes</th>
            </tr>
          </thead>
          <tbody>
            {tables.map((t) => (
              <tr key={t.name} data-row data-table={t.name}>
                <td>
                  <Link to={`/data/${t.name}`} data-primary className="row-link">
                    {t.name}
                  </Link>
                </td>
                <td className="index-list">
                  {t.indexes.map((i) => (
                    <Link key={i.name} to={hrefOf(`/data/${t.name}`, { index: i.name })}>
                      {i.name}
                      {i.fields.length ? <span className="muted"> [{i.fields.join(", ")}]</span> : null}
                    </Link>
                  ))}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}

function OpenById() {
  const [id, setId] = useState("");
  const { byNumber } = useSchema();
  return (
    <form
      className="filters"
      onSubmit={(e) => {
        e.preventDefault();
        // The document view says clearly when the text is not an id of this deployment.
        navigate(`/data/_/${encodeURIComponent(id.trim())}`);
      }}
    >
      <label>
        Open a document by id
        <input data-filter name="id" value={id} onChange={(e) => setId(e.target.value)} placeholder={`one of ${byNumber.size} tables`} />
      </label>
      <button type="submit" disabled={!id.trim()}>
        Open
      </button>
    </form>
  );
}

/** The query's arguments from the URL, or an error saying which input is wrong. */
function argsFromParams(table, params) {
  const index = table.indexes.find((i) => i.name === params.get("index")) ?? table.indexes.find((i) => i.name === "by_creation_time");
  const eqTexts = params.getAll("eq");
  // Every index ends with _creationTime: after all its fields, the range bounds that.
  const next = index.fields[eqTexts.length] ?? "_creationTime";
  const args = { table: table.name, index: index.name, order: params.get("order") === "asc" ? "asc" : "desc" };
  try {
    if (eqTexts.length > index.fields.length) throw new Error(`Index ${index.name} has only ${index.fields.length} fields.`);
    args.eq = eqTexts.map((text, i) => parseValue(text, fieldType(table, index.fields[i]), index.fields[i]));
    for (const [side, op] of [
      ["lo", "loOp"],
      ["hi", "hiOp"],
    ]) {
      const text = params.get(side);
      if (text === null || text === "") continue;
      const value = parseValue(text, fieldType(table, next), next);
      const inclusive = side === "lo" ? params.get(op) !== "gt" : params.get(op) === "lte";
      args[side === "lo" ? "lower" : "upper"] = { value, inclusive };
    }
  } catch (error) {
    return { index, error };
  }
  if (params.get("deleted") === "1") args.includeDeleted = true;
  return { index, args };
}

function IndexForm({ table, index, params }) {
  const update = useParamsUpdater(`/data/${table.name}`);
  const eqTexts = params.getAll("eq");
  const [draft, setDraft] = useState(() => ({
    eq: index.fields.map((_, i) => eqTexts[i] ?? ""),
    lo: params.get("lo") ?? "",
    hi: params.get("hi") ?? "",
  }));
  const apply = (event) => {
    event.preventDefault();
    // The equality prefix is the filled fields up to the first empty one.
    const eq = [];
    for (const text of draft.eq) {
      if (text === "") break;
      eq.push(text);
    }
    const search = new URLSearchParams(window.location.search);
    search.delete("eq");
    for (const text of eq) search.append("eq", text);
    for (const key of ["lo", "hi"]) {
      if (draft[key] === "") search.delete(key);
      else search.set(key, draft[key]);
    }
    const text = search.toString();
    navigate(`/data/${table.name}${text ? `?${text}` : ""}`, { replace: true });
  };
  const filled = draft.eq.findIndex((t) => t === "");
  const rangeField = index.fields[filled < 0 ? index.fields.length : filled] ?? "_creationTime";
  return (
    <form className="index-form" onSubmit={apply} aria-label="Index range">
      <label>
        Index
        <select
          name="index"
          value={index.name}
          onChange={(e) => update({ index: e.target.value, eq: "", lo: "", hi: "" })}
          data-filter
        >
          {table.indexes.map((i) => (
            <option key={i.name} value={i.name}>
              {i.name} {i.fields.length ? `[${i.fields.join(", ")}]` : "(creation time)"}
            </option>
          ))}
        </select>
      </label>
      {index.fields.map((field, i) => (
        <label key={field}>
          {field} =<span className="muted"> {describe(fieldType(table, field))}</span>
          <input
            name={`eq-${field}`}
            value={draft.eq[i]}
            disabled={i > 0 && draft.eq[i - 1] === ""}
            onChange={(e) => setDraft({ ...draft, eq: draft.eq.map((t, j) => (j === i ? e.target.value : t)) })}
          />
        </label>
      ))}
      {rangeField ? (
        <fieldset className="range">
          <legend>Range on {rangeField}</legend>
          <select name="loOp" value={params.get("loOp") ?? "gte"} onChange={(e) => update({ loOp: e.target.value })} aria-label="Lower bound">
            <option value="gte">≥</option>
            <option value="gt">&gt;</option>
          </select>
          <input name="lo" value={draft.lo} onChange={(e) => setDraft({ ...draft, lo: e.target.value })} placeholder="from" />
          <select name="hiOp" value={params.get("hiOp") ?? "lt"} onChange={(e) => update({ hiOp: e.target.value })} aria-label="Upper bound">
            <option value="lt">&lt;</option>
            <option value="lte">≤</option>
          </select>
          <input name="hi" value={draft.hi} onChange={(e) => setDraft({ ...draft, hi: e.target.value })} placeholder="to" />
        </fieldset>
      ) : null}
      <button type="submit">Apply</button>
      <label>
        Order
        <select name="order" value={params.get("order") === "asc" ? "asc" : "desc"} onChange={(e) => update({ order: e.target.value })}>
          <option value="desc">descending</option>
          <option value="asc">ascending</option>
        </select>
      </label>
      <label>
        Page
        <select name="size" value={params.get("size") ?? "50"} onChange={(e) => update({ size: e.target.value })}>
          {PAGE_SIZES.map((n) => (
            <option key={n} value={n}>
              {n}
            </option>
          ))}
        </select>
      </label>
      <label className="check">
        <input type="checkbox" name="deleted" checked={params.get("deleted") === "1"} onChange={(e) => update({ deleted: e.target.checked ? "1" : "" })} />
        Show soft-deleted
      </label>
    </form>
  );
}

function Page({ args, size, cursors, setCursors }) {
  const cursor = cursors[cursors.length - 1];
  const page = useQuery("_system/console/indexPage:default", { ...args, paginationOpts: { numItems: size, cursor } });
  if (page === undefined) return <Loading />;
  const number = cursors.length;
  const first = (number - 1) * size + 1;
  const pager = (
    <nav className="pager" aria-label="Pages">
      <button type="button" disabled={number === 1} onClick={() => setCursors(cursors.slice(0, -1))} data-action="previous">
        ← Previous
      </button>
      <span data-page-range>
        {page.page.length ? `${first}–${first + page.page.length - 1}` : "none"} · page {number}
      </span>
      <button type="button" disabled={page.isDone} onClick={() => setCursors([...cursors, page.continueCursor])} data-action="next">
        Next →
      </button>
    </nav>
  );
  return (
    <>
      {pager}
      {page.page.length === 0 ? (
        <Empty>
          No document {number === 1 ? "in this range" : "on this page"}. Widen the range, pick another index
          {args.includeDeleted ? "" : ", or show soft-deleted documents"}.
        </Empty>
      ) : (
        <ol className="documents" start={first}>
          {page.page.map((doc) => (
            <li key={doc._id} data-row data-document={doc._id} className={doc.deletedAt ? "deleted" : undefined}>
              <header>
                <Link to={`/data/${args.table}/${doc._id}`} data-primary className="mono">
                  {doc._id}
                </Link>
                <Id id={doc._id} />
                <RelTime ms={doc._creationTime} />
                {doc.deletedAt ? <span className="tag">deleted</span> : null}
              </header>
              <JsonBlock value={doc} />
            </li>
          ))}
        </ol>
      )}
      {page.page.length > 5 ? pager : null}
    </>
  );
}

function TableView({ table, params }) {
  useTitle(`Data: ${table.name}`);
  const { index, args, error } = argsFromParams(table, params);
  const size = PAGE_SIZES.includes(Number(params.get("size"))) ? Number(params.get("size")) : 50;
  const key = JSON.stringify([args, size]);
  return (
    <div className="view">
      <header className="view-head">
        <div>
          <div className="crumbs">
            <Link to="/data">Data</Link> /
          </div>
          <h1>{table.name}</h1>
        </div>
      </header>
      {/* Keyed by what the URL says, so Back and Forward show their own values in the form. */}
      <IndexForm
        key={JSON.stringify([table.name, index.name, params.getAll("eq"), params.get("lo"), params.get("hi")])}
        table={table}
        index={index}
        params={params}
      />
      {error ? <ErrorBox error={error} hint="Fix the value and apply again." /> : <Pages key={key} args={args} size={size} />}
    </div>
  );
}

/** Page by page: the cursors of the pages before, so Previous goes back exactly. */
function Pages({ args, size }) {
  const [cursors, setCursors] = useState([null]);
  return <Page args={args} size={size} cursors={cursors} setCursors={setCursors} />;
}

function DocumentView({ id }) {
  const found = useQuery("_system/console/document:default", { id });
  useTitle(`Document ${id.slice(0, 8)}`);
  if (found === undefined) return <Loading />;
  return (
    <div className="view">
      <header className="view-head">
        <div>
          <div className="crumbs">
            <Link to="/data">Data</Link> / {found ? <Link to={`/data/${found.table}`}>{found.table}</Link> : null} /
          </div>
          <h1 className="mono">{id}</h1>
        </div>
      </header>
      {found === null ? (
        <Empty>This id names no document (it may never have existed in this deployment).</Empty>
      ) : (
        <Section title={found.document.deletedAt ? `${found.table} (soft-deleted)` : found.table} id="document">
          <JsonBlock value={found.document} />
        </Section>
      )}
    </div>
  );
}

export function DataView({ table: name, documentId, params }) {
  const { byName } = useSchema();
  if (!name) return <Tables />;
  if (documentId) return <DocumentView id={documentId} />;
  const table = byName.get(name);
  if (!table) {
    return (
      <Empty>
        There is no table “{name}”. <Link to="/data">See every table</Link>.
      </Empty>
    );
  }
  return <TableView table={table} params={params} />;
}
