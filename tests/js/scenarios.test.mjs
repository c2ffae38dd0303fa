// Scenario tests: each seed (shared/seeds/001..004) played end to end against
// its own Jangar server with the npm `convex` clients, checking the values that
// shared/spec/functions.md fixes.
//
// Run with `node --test scenarios.test.mjs` in tests/js after `cargo build`
// (or with JANGAR_BIN pointing at a jangar binary; see server.mjs).
//
// Within a describe the tests run in order and build on each other's data; a
// test whose prerequisites are missing fails with "... is missing".

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ConvexClient, ConvexHttpClient } from "convex/browser";
import { anyApi } from "convex/server";
import { ConvexError } from "convex/values";

import { startServer } from "./server.mjs";
import { waitForValue } from "./live.mjs";

const api = anyApi;

// ---------------------------------------------------------------------------
// Helpers

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Lets the server clock move on, so two writes get distinct ms timestamps.
const tick = () => sleep(4);

function need(value, what) {
  assert.ok(value !== undefined && value !== null, `${what} is missing: an earlier step failed`);
  return value;
}

function isTimestamp(value) {
  return typeof value === "number" && Number.isFinite(value) && Math.abs(value - Date.now()) < 10 * 60_000;
}

function assertTimestamp(value, what) {
  assert.ok(isTimestamp(value), `${what} should be ms since the epoch close to now, got ${JSON.stringify(value)}`);
}

function assertAbsent(doc, field, what) {
  assert.ok(
    doc[field] === undefined || doc[field] === null,
    `${what}.${field} should be unset, got ${JSON.stringify(doc[field])}`,
  );
}

function ids(docs) {
  assert.ok(Array.isArray(docs), `expected an array, got ${JSON.stringify(docs)}`);
  return docs.map((d) => d._id);
}

// Awaits `call` and checks that it failed with an application error (ConvexError)
// whose data has `code` and every field of `fields`. Returns the data.
async function expectAppError(call, code, fields = {}) {
  let outcome;
  try {
    outcome = { value: await call };
  } catch (err) {
    outcome = { err };
  }
  assert.ok(
    "err" in outcome,
    `expected a ConvexError with data.code ${code}, but the call returned ${JSON.stringify(outcome.value)}`,
  );
  const { err } = outcome;
  assert.ok(
    err instanceof ConvexError,
    `expected a ConvexError with data.code ${code}, got ${err?.name}: ${err?.message}`,
  );
  assert.ok(
    typeof err.data === "object" && err.data !== null,
    `ConvexError.data should be an object, got ${JSON.stringify(err.data)}`,
  );
  assert.equal(err.data.code, code, `data.code (data ${JSON.stringify(err.data)})`);
  assert.ok(
    err.data.message === undefined || typeof err.data.message === "string",
    `data.message should be a string, got ${JSON.stringify(err.data.message)}`,
  );
  for (const [key, expected] of Object.entries(fields)) {
    assert.deepEqual(err.data[key], expected, `data.${key} (data ${JSON.stringify(err.data)})`);
  }
  return err.data;
}


// Seed 004's backend call, verbatim: a plain POST, JSON body, no Content-Type.
async function seed004Mutation(url, path, args) {
  const res = await fetch(`${url}/api/mutation`, {
    method: "POST",
    body: JSON.stringify({ path, args }),
  });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    assert.fail(`POST /api/mutation ${path} answered ${res.status} with a body that is not JSON: ${text}`);
  }
  assert.equal(res.status, 200, `POST /api/mutation ${path}: HTTP status (body ${text})`);
  assert.equal(body.status, "success", `POST /api/mutation ${path}: body ${text}`);
  return body.value;
}

function useServer() {
  const ctx = {};
  before(async () => {
    ctx.server = await startServer();
    ctx.client = new ConvexHttpClient(ctx.server.url);
  });
  after(async () => {
    for (const live of ctx.live ?? []) await live.close();
    if (ctx.server !== undefined) await ctx.server.stop();
  });
  ctx.liveClient = () => {
    const live = new ConvexClient(ctx.server.url);
    (ctx.live ??= []).push(live);
    return live;
  };
  return ctx;
}

// ---------------------------------------------------------------------------
// Seed 001: the control plane (sessions, threads, work orders from messages,
// runs with steps, artifacts and events, dashboard, timeline).

describe("seed 001: control plane", () => {
  const ctx = useServer();
  const s = {};

  const firstLine = "Fix the flaky login test";
  const messages = [
    { role: "user", content: `${firstLine}\nIt fails on CI about once in ten runs.\nSee run 4411.` },
    { role: "assistant", content: "I will open a work order and start a Codex run for it." },
    { role: "user", content: "Also raise the retry budget of the e2e suite." },
  ];

  test("sessions:create, threads:append, sessions:getWithThreads", async () => {
    const { client } = ctx;
    s.sessionId = await client.mutation(api.sessions.create, { userId: "operator-1", title: "Login flake" });
    s.otherSessionId = await client.mutation(api.sessions.create, { userId: "operator-2", title: "Elsewhere" });
    assert.equal(typeof s.sessionId, "string");
    assert.notEqual(s.sessionId, s.otherSessionId);

    s.messageIds = [];
    for (const m of messages) {
      s.messageIds.push(await client.mutation(api.threads.append, { sessionId: s.sessionId, ...m }));
      await tick();
    }
    assert.equal(new Set(s.messageIds).size, 3, "message ids are distinct");
    s.foreignMessageId = await client.mutation(api.threads.append, {
      sessionId: s.otherSessionId,
      role: "user",
      content: "A message of another session",
    });

    const view = await client.query(api.sessions.getWithThreads, { sessionId: s.sessionId });
    assert.ok(view !== null && typeof view === "object", `getWithThreads: ${JSON.stringify(view)}`);
    assert.equal(view.session._id, s.sessionId);
    assert.equal(view.session.userId, "operator-1");
    assert.equal(view.session.title, "Login flake");
    assertTimestamp(view.session.createdAt, "session.createdAt");
    assertTimestamp(view.session.lastMessageAt, "session.lastMessageAt");
    assert.deepEqual(ids(view.messages), s.messageIds, "messages oldest first, only this session's");
    assert.deepEqual(
      view.messages.map((m) => ({ sessionId: m.sessionId, role: m.role, content: m.content })),
      messages.map((m) => ({ sessionId: s.sessionId, ...m })),
    );
    assert.deepEqual(view.workOrders, [], "no work orders yet");
    assert.ok(
      view.session.lastMessageAt >= view.messages[2].createdAt,
      "threads:append bumps the session's lastMessageAt",
    );
  });

  test("workOrders:createFromMessage: title, targetRepo/targetBranch, session check", async () => {
    const { client } = ctx;
    const sessionId = need(s.sessionId, "sessionId");
    const [m1, , m3] = need(s.messageIds, "messageIds");

    s.wo1 = await client.mutation(api.workOrders.createFromMessage, {
      sessionId,
      triggerMessageId: m1,
      repo: "proompteng/lab",
      branchHint: "codex/fix-login-flake",
    });
    const wo1 = await client.query(api.workOrders.get, { workOrderId: s.wo1 });
    assert.equal(wo1._id, s.wo1);
    assert.equal(wo1.sessionId, sessionId);
    assert.equal(wo1.triggerMessageId, m1);
    assert.equal(wo1.title, firstLine, "title is the message's first line");
    assert.equal(wo1.targetRepo, "proompteng/lab", "repo is stored as targetRepo");
    assert.equal(wo1.targetBranch, "codex/fix-login-flake", "branchHint is stored as targetBranch");
    assert.equal(wo1.status, "submitted");
    assertTimestamp(wo1.createdAt, "workOrder.createdAt");
    assertTimestamp(wo1.updatedAt, "workOrder.updatedAt");
    await tick();

    const workflowArgs = { suite: "e2e", retries: { from: 1, to: 3 }, tags: ["flaky", "ci"] };
    s.wo2 = await client.mutation(api.workOrders.createFromMessage, {
      sessionId,
      triggerMessageId: m3,
      summary: "Raise the e2e retry budget",
      workflowType: "codexImplement",
      workflowArgs,
    });
    const wo2 = await client.query(api.workOrders.get, { workOrderId: s.wo2 });
    assert.equal(wo2.title, "Raise the e2e retry budget", "title comes from the summary");
    assert.equal(wo2.summary, "Raise the e2e retry budget");
    assert.equal(wo2.triggerMessageId, m3);
    assert.equal(wo2.workflowType, "codexImplement");
    assert.deepEqual(wo2.workflowArgs, workflowArgs);
    assert.equal(wo2.status, "submitted");
    assertAbsent(wo2, "targetRepo", "wo2");
    assertAbsent(wo2, "targetBranch", "wo2");

    await expectAppError(
      client.mutation(api.workOrders.createFromMessage, {
        sessionId,
        triggerMessageId: need(s.foreignMessageId, "foreignMessageId"),
      }),
      "InvalidArgument",
    );

    const view = await client.query(api.sessions.getWithThreads, { sessionId });
    assert.deepEqual(ids(view.workOrders), [s.wo2, s.wo1], "work orders newest first; the rejected call wrote nothing");
    const other = await client.query(api.sessions.getWithThreads, { sessionId: s.otherSessionId });
    assert.deepEqual(other.workOrders, [], "the other session got no work order");
  });

  test("runs:start runs by default and moves the work order to running", async () => {
    const { client } = ctx;
    const workOrderId = need(s.wo1, "wo1");
    s.run1 = await client.mutation(api.runs.start, {
      workOrderId,
      temporalWorkflowId: "wf-login-flake",
      temporalRunId: "run-a1",
      taskQueue: "codex",
      workerId: "worker-7",
      repo: "proompteng/lab",
      branch: "codex/fix-login-flake",
    });
    const run = await client.query(api.runs.get, { runId: s.run1 });
    assert.equal(run._id, s.run1);
    assert.equal(run.workOrderId, workOrderId);
    assert.equal(run.status, "running", "status defaults to running");
    assert.equal(run.temporalWorkflowId, "wf-login-flake");
    assert.equal(run.temporalRunId, "run-a1");
    assert.equal(run.taskQueue, "codex");
    assert.equal(run.workerId, "worker-7");
    assert.equal(run.repo, "proompteng/lab");
    assert.equal(run.branch, "codex/fix-login-flake");
    assertTimestamp(run.startedAt, "run.startedAt");
    assertAbsent(run, "endedAt", "a running run");

    const order = await client.query(api.workOrders.get, { workOrderId });
    assert.equal(order.status, "running", "submitted -> accepted -> running");
    // It really is running: going back to accepted is not allowed.
    await expectAppError(
      client.mutation(api.workOrders.updateStatus, { workOrderId, status: "accepted" }),
      "InvalidTransition",
      { from: "running", to: "accepted" },
    );

    const runs = await client.query(api.runs.listByWorkOrder, { workOrderId });
    assert.deepEqual(ids(runs), [s.run1]);
  });

  test("steps:appendOrUpdate upserts by (runId, name) and follows the step state machine", async () => {
    const { client } = ctx;
    const runId = need(s.run1, "run1");
    const step = async (name, status, extra = {}) =>
      client.mutation(api.steps.appendOrUpdate, { runId, name, status, ...extra });
    const stepDoc = async (id) => {
      const timeline = await client.query(api.runs.getTimeline, { runId });
      const found = timeline.steps.find((x) => x._id === id);
      assert.ok(found, `step ${id} should be in the timeline`);
      return found;
    };

    // "checkout": pending -> running -> succeeded, one document throughout.
    s.checkout = await step("checkout", "pending", { kind: "activity", payload: { ref: "main" } });
    let doc = await stepDoc(s.checkout);
    assert.equal(doc.runId, runId);
    assert.equal(doc.name, "checkout");
    assert.equal(doc.kind, "activity");
    assert.equal(doc.status, "pending");
    assert.deepEqual(doc.payload, { ref: "main" });
    assert.equal(typeof doc.attempt, "number");
    const firstAttempt = doc.attempt;
    await tick();
    assert.equal(await step("checkout", "running"), s.checkout, "the same (runId, name) is the same step");
    doc = await stepDoc(s.checkout);
    assert.equal(doc.status, "running");
    assertTimestamp(doc.startedAt, "checkout.startedAt");
    await tick();
    assert.equal(await step("checkout", "succeeded", { logUrl: "https://logs.example/checkout" }), s.checkout);
    doc = await stepDoc(s.checkout);
    assert.equal(doc.status, "succeeded");
    assert.equal(doc.attempt, firstAttempt, "no retry, no new attempt");
    assert.equal(doc.logUrl, "https://logs.example/checkout");
    assert.equal(doc.kind, "activity");

    // An illegal move.
    await expectAppError(step("checkout", "pending"), "InvalidTransition", { from: "succeeded", to: "pending" });
    assert.equal((await stepDoc(s.checkout)).status, "succeeded", "the rejected move changed nothing");
    await tick();

    // "build" starts after "checkout" (but sorts before it by name).
    s.build = await step("build", "running", { kind: "activity" });
    assert.notEqual(s.build, s.checkout);
    await tick();
    assert.equal(await step("build", "succeeded"), s.build);
    await tick();

    // "tests": running -> failed -> running again (attempt + 1) -> succeeded.
    s.tests = await step("tests", "running", { kind: "check" });
    doc = await stepDoc(s.tests);
    const testsAttempt = doc.attempt;
    assert.equal(typeof testsAttempt, "number");
    await tick();
    assert.equal(await step("tests", "failed", { payload: { failed: 2 } }), s.tests);
    doc = await stepDoc(s.tests);
    assert.equal(doc.status, "failed");
    assert.equal(doc.attempt, testsAttempt);
    await tick();
    assert.equal(await step("tests", "running"), s.tests);
    doc = await stepDoc(s.tests);
    assert.equal(doc.status, "running");
    assert.equal(doc.attempt, testsAttempt + 1, "a retry from failed to running increments attempt");
    await tick();
    assert.equal(await step("tests", "succeeded", { payload: { failed: 0 } }), s.tests);
    doc = await stepDoc(s.tests);
    assert.equal(doc.status, "succeeded");
    assert.equal(doc.attempt, testsAttempt + 1);
    assert.deepEqual(doc.payload, { failed: 0 });
    assert.equal(doc.kind, "check");

    // A hook may go from pending straight to succeeded.
    await tick();
    s.hook = await step("notify", "pending", { kind: "hook" });
    await tick();
    assert.equal(await step("notify", "succeeded"), s.hook);
    assert.equal((await stepDoc(s.hook)).status, "succeeded");
  });

  test("artifacts:add and events:append on the run", async () => {
    const { client } = ctx;
    const runId = need(s.run1, "run1");
    s.artifacts = [];
    s.artifacts.push(
      await client.mutation(api.artifacts.add, {
        runId,
        type: "log",
        url: "https://logs.example/run-a1",
        label: "worker log",
      }),
    );
    await tick();
    s.artifacts.push(
      await client.mutation(api.artifacts.add, {
        runId,
        type: "diff",
        label: "patch",
        content: "--- a/login.test.ts\n+++ b/login.test.ts\n",
      }),
    );
    await tick();

    s.comment = await client.mutation(api.events.append, {
      runId,
      type: "comment",
      data: { text: "retrying the flaky test", by: "worker-7" },
    });
    await tick();
    // An event of the work order alone is not an event of the run.
    s.orderEvent = await client.mutation(api.events.append, {
      workOrderId: need(s.wo1, "wo1"),
      type: "comment",
      data: { text: "order-level note" },
    });
    await tick();
    s.system = await client.mutation(api.events.append, { runId, type: "system", data: { heartbeat: 1 } });
    assert.equal(new Set([s.comment, s.orderEvent, s.system]).size, 3);

    const events = await client.query(api.events.listByRun, { runId });
    assert.deepEqual(
      events.map((e) => [e.seq, e.type, e.data]),
      [
        [1, "state_change", { from: null, to: "running" }],
        [2, "comment", { text: "retrying the flaky test", by: "worker-7" }],
        [3, "system", { heartbeat: 1 }],
      ],
    );
    assert.deepEqual(ids(events).slice(1), [s.comment, s.system]);
    for (const e of events) {
      assert.equal(e.runId, runId);
      assertTimestamp(e.createdAt, `event ${e.seq}.createdAt`);
    }
  });

  test("runs:updateStatus to succeeded ends the run and finishes the work order", async () => {
    const { client } = ctx;
    const runId = need(s.run1, "run1");
    const prUrl = "https://github.com/proompteng/lab/pull/4412";
    const commitSha = "9f1c2e7d4b3a";
    await tick();
    const run = await client.mutation(api.runs.updateStatus, { runId, status: "succeeded", prUrl, commitSha });
    assert.equal(run._id, runId, "updateStatus returns the updated run");
    assert.equal(run.status, "succeeded");
    assert.equal(run.prUrl, prUrl);
    assert.equal(run.commitSha, commitSha);
    assertTimestamp(run.endedAt, "run.endedAt");
    assert.ok(run.endedAt >= run.startedAt, "endedAt >= startedAt");
    s.run1EndedAt = run.endedAt;

    const order = await client.query(api.workOrders.get, { workOrderId: need(s.wo1, "wo1") });
    assert.equal(order.status, "succeeded");
    assert.equal(order.prUrl, prUrl, "prUrl copied to the work order");
    assert.equal(order.commitSha, commitSha, "commitSha copied to the work order");

    // Final is final; the same status again is a no-op.
    await expectAppError(
      client.mutation(api.runs.updateStatus, { runId, status: "running" }),
      "InvalidTransition",
      { from: "succeeded", to: "running" },
    );
    await tick();
    const again = await client.mutation(api.runs.updateStatus, { runId, status: "succeeded" });
    assert.equal(again.status, "succeeded");
    assert.equal(again.endedAt, s.run1EndedAt, "a no-op does not move endedAt");

    const events = await client.query(api.events.listByRun, { runId });
    assert.deepEqual(
      events.map((e) => e.seq),
      [1, 2, 3, 4],
      "seq is gapless; the no-op and the rejected move appended nothing",
    );
    assert.equal(events[3].type, "state_change");
    assert.deepEqual(events[3].data, { from: "running", to: "succeeded" });

    const tail = await client.query(api.events.listByRun, { runId, afterSeq: 2 });
    assert.deepEqual(tail.map((e) => e.seq), [3, 4], "afterSeq replays from a known point");
    assert.deepEqual(ids(tail), ids(events).slice(2));
    assert.deepEqual(await client.query(api.events.listByRun, { runId, afterSeq: 4 }), []);
  });

  test("more runs: queued -> running, queued, running -> failed, queued -> canceled", async () => {
    const { client } = ctx;
    const sessionId = need(s.sessionId, "sessionId");
    const wo2 = need(s.wo2, "wo2");

    // run2 on wo2: queued first; the work order only starts with the run.
    await tick();
    s.run2 = await client.mutation(api.runs.start, {
      workOrderId: wo2,
      temporalWorkflowId: "wf-retry-budget",
      status: "queued",
    });
    let run = await client.query(api.runs.get, { runId: s.run2 });
    assert.equal(run.status, "queued");
    assertAbsent(run, "endedAt", "a queued run");
    assert.equal((await client.query(api.workOrders.get, { workOrderId: wo2 })).status, "submitted");
    await tick();
    run = await client.mutation(api.runs.updateStatus, { runId: s.run2, status: "running" });
    assert.equal(run.status, "running");
    assertTimestamp(run.startedAt, "run2.startedAt");
    assertAbsent(run, "endedAt", "a running run");
    assert.equal((await client.query(api.workOrders.get, { workOrderId: wo2 })).status, "running");

    // run3: queued and stays queued.
    await tick();
    s.wo3 = await client.mutation(api.workOrders.create, { sessionId, title: "Bump Node in CI" });
    s.run3 = await client.mutation(api.runs.start, {
      workOrderId: s.wo3,
      temporalWorkflowId: "wf-bump-node",
      status: "queued",
    });

    // run4: running -> failed, with the failure copied to its work order.
    await tick();
    s.wo4 = await client.mutation(api.workOrders.create, { sessionId, title: "Migrate the auth module" });
    s.run4 = await client.mutation(api.runs.start, { workOrderId: s.wo4, temporalWorkflowId: "wf-auth" });
    await tick();
    const failureReason = { stage: "tests", exitCode: 1, lines: ["FAIL auth.test.ts"] };
    run = await client.mutation(api.runs.updateStatus, { runId: s.run4, status: "failed", failureReason });
    assert.equal(run.status, "failed");
    assert.deepEqual(run.failureReason, failureReason);
    assertTimestamp(run.endedAt, "run4.endedAt");
    let order = await client.query(api.workOrders.get, { workOrderId: s.wo4 });
    assert.equal(order.status, "failed");
    assert.deepEqual(order.failureReason, failureReason, "failureReason copied to the work order");

    // run5: queued -> canceled.
    await tick();
    s.wo5 = await client.mutation(api.workOrders.create, { sessionId, title: "Drop the old dashboard" });
    s.run5 = await client.mutation(api.runs.start, {
      workOrderId: s.wo5,
      temporalWorkflowId: "wf-old-dashboard",
      status: "queued",
    });
    await tick();
    run = await client.mutation(api.runs.updateStatus, { runId: s.run5, status: "canceled" });
    assert.equal(run.status, "canceled");
    assertTimestamp(run.endedAt, "run5.endedAt");
    order = await client.query(api.workOrders.get, { workOrderId: s.wo5 });
    assert.equal(order.status, "canceled");

    // A run that is queued may not succeed without running.
    await expectAppError(
      client.mutation(api.runs.updateStatus, { runId: s.run3, status: "succeeded" }),
      "InvalidTransition",
      { from: "queued", to: "succeeded" },
    );

    // Every status change of every run is a state_change event, from null at creation.
    const changes = async (runId) =>
      (await client.query(api.events.listByRun, { runId })).map((e) => [e.seq, e.type, e.data]);
    assert.deepEqual(await changes(s.run2), [
      [1, "state_change", { from: null, to: "queued" }],
      [2, "state_change", { from: "queued", to: "running" }],
    ]);
    assert.deepEqual(await changes(s.run3), [[1, "state_change", { from: null, to: "queued" }]]);
    assert.deepEqual(await changes(s.run4), [
      [1, "state_change", { from: null, to: "running" }],
      [2, "state_change", { from: "running", to: "failed" }],
    ]);
    assert.deepEqual(await changes(s.run5), [
      [1, "state_change", { from: null, to: "queued" }],
      [2, "state_change", { from: "queued", to: "canceled" }],
    ]);
  });

  test("runs:getDashboard counts every status and lists active and recent runs", async () => {
    const { client } = ctx;
    for (const key of ["run1", "run2", "run3", "run4", "run5"]) need(s[key], key);
    const dashboard = await client.query(api.runs.getDashboard, {});
    assert.deepEqual(dashboard.counts, { queued: 1, running: 1, succeeded: 1, failed: 1, canceled: 1 });

    assert.ok(Array.isArray(dashboard.active), `active: ${JSON.stringify(dashboard.active)}`);
    assert.deepEqual(
      dashboard.active.map((a) => [a.run?._id, a.run?.status, a.workOrderTitle]),
      [
        [s.run3, "queued", "Bump Node in CI"],
        [s.run2, "running", "Raise the e2e retry budget"],
      ],
      "active: running or queued runs, newest first, each with its work order's title",
    );
    for (const a of dashboard.active) {
      assert.deepEqual(Object.keys(a).sort(), ["run", "workOrderTitle"]);
    }

    assert.ok(Array.isArray(dashboard.recent), `recent: ${JSON.stringify(dashboard.recent)}`);
    assert.deepEqual(
      dashboard.recent.map((r) => [r._id, r.status]),
      [
        [s.run5, "canceled"],
        [s.run4, "failed"],
        [s.run1, "succeeded"],
      ],
      "recent: the ended runs, most recently ended first",
    );

    const one = await client.query(api.runs.getDashboard, { limit: 1 });
    assert.deepEqual(one.counts, dashboard.counts, "the limit does not change the counts");
    assert.deepEqual(one.active.map((a) => a.run._id), [s.run3]);
    assert.deepEqual(ids(one.recent), [s.run5]);

    // The counts follow later changes.
    await client.mutation(api.runs.updateStatus, { runId: s.run3, status: "running" });
    const later = await client.query(api.runs.getDashboard, {});
    assert.deepEqual(later.counts, { queued: 0, running: 2, succeeded: 1, failed: 1, canceled: 1 });
    assert.deepEqual(
      later.active.map((a) => a.run._id).sort(),
      [s.run2, s.run3].sort(),
      "both running runs are active",
    );
  });

  test("runs:getTimeline: run, work order, steps by startedAt, artifacts by createdAt, events by seq", async () => {
    const { client } = ctx;
    const runId = need(s.run1, "run1");
    const timeline = await client.query(api.runs.getTimeline, { runId });
    assert.ok(timeline !== null && typeof timeline === "object", `timeline: ${JSON.stringify(timeline)}`);
    assert.deepEqual(Object.keys(timeline).sort(), ["artifacts", "events", "run", "steps", "workOrder"]);

    assert.equal(timeline.run._id, runId);
    assert.equal(timeline.run.status, "succeeded");
    assert.equal(timeline.workOrder._id, need(s.wo1, "wo1"));
    assert.equal(timeline.workOrder.status, "succeeded");
    assert.equal(timeline.workOrder.title, firstLine);

    const steps = timeline.steps;
    assert.deepEqual(
      ids(steps).slice().sort(),
      [s.checkout, s.build, s.tests, s.hook].sort(),
      "exactly the run's four steps",
    );
    // The steps that ran have a startedAt (the notify hook went from pending straight
    // to succeeded, so the spec does not say whether or where it started).
    const started = steps.filter((x) => x.name !== "notify");
    for (const st of started) assertTimestamp(st.startedAt, `step ${st.name}.startedAt`);
    for (let i = 1; i < started.length; i++) {
      assert.ok(
        started[i - 1].startedAt <= started[i].startedAt,
        `steps ordered by startedAt: ${JSON.stringify(steps.map((x) => [x.name, x.startedAt]))}`,
      );
    }
    const names = started.map((x) => x.name);
    assert.deepEqual(names, ["checkout", "build", "tests"], "in the order they (last) started");
    assert.ok(
      names.indexOf("checkout") < names.indexOf("build"),
      `checkout started before build, so it comes first (not by name): ${names}`,
    );

    assert.deepEqual(ids(timeline.artifacts), s.artifacts, "artifacts in creation order");
    assert.deepEqual(
      timeline.artifacts.map((a) => [a.type, a.label, a.url, a.content]),
      [
        ["log", "worker log", "https://logs.example/run-a1", undefined],
        ["diff", "patch", undefined, "--- a/login.test.ts\n+++ b/login.test.ts\n"],
      ],
    );
    for (const a of timeline.artifacts) {
      assert.equal(a.runId, runId);
      assertTimestamp(a.createdAt, "artifact.createdAt");
    }

    assert.deepEqual(timeline.events.map((e) => e.seq), [1, 2, 3, 4]);
    assert.deepEqual(
      ids(timeline.events),
      ids(await client.query(api.events.listByRun, { runId })),
      "the timeline's events are the run's events",
    );
    assert.ok(!ids(timeline.events).includes(s.orderEvent), "a work-order-only event is not a run event");

    const listed = await client.query(api.artifacts.listByRun, { runId });
    assert.deepEqual(ids(listed), s.artifacts, "artifacts:listByRun oldest first");
  });
});

// ---------------------------------------------------------------------------
// Seed 002: work orders (create with workflow args, the status machine,
// results, by status, by session with pagination).

describe("seed 002: work orders", () => {
  const ctx = useServer();
  const s = {};
  const workflowArgs = {
    repo: "proompteng/lab",
    depth: 2,
    ratio: 0.25,
    dryRun: false,
    labels: ["codex", "auto", 7],
    nested: { none: null, empty: {}, list: [{ a: 1 }, { b: [true, "x"] }] },
    text: "multi\nline ünïcode ✓",
  };

  const listByStatus = async (status) => ids(await ctx.client.query(api.workOrders.listByStatus, { status }));

  test("workOrders:create stores every field; workflowArgs round-trips exactly", async () => {
    const { client } = ctx;
    s.sessionId = await client.mutation(api.chatSessions.create, { userId: "op", title: "Work orders" });
    s.orderId = await client.mutation(api.workOrders.create, {
      sessionId: s.sessionId,
      title: "Upgrade the Temporal SDK",
      prompt: "Upgrade @temporalio/* to the latest minor and fix the breaking changes.",
      workflowType: "codexImplement",
      workflowArgs,
      githubIssueUrl: "https://github.com/proompteng/lab/issues/99",
      requestedBy: "user_42",
      targetRepo: "proompteng/lab",
      targetBranch: "codex/temporal-upgrade",
      status: "draft",
    });
    const doc = await client.query(api.workOrders.get, { workOrderId: s.orderId });
    assert.equal(doc._id, s.orderId);
    assert.equal(doc.sessionId, s.sessionId);
    assert.equal(doc.status, "draft");
    assert.equal(doc.title, "Upgrade the Temporal SDK");
    assert.equal(doc.prompt, "Upgrade @temporalio/* to the latest minor and fix the breaking changes.");
    assert.equal(doc.workflowType, "codexImplement");
    assert.deepEqual(doc.workflowArgs, workflowArgs);
    assert.equal(doc.githubIssueUrl, "https://github.com/proompteng/lab/issues/99");
    assert.equal(doc.requestedBy, "user_42");
    assert.equal(doc.targetRepo, "proompteng/lab");
    assert.equal(doc.targetBranch, "codex/temporal-upgrade");
    assertTimestamp(doc.createdAt, "createdAt");
    assertTimestamp(doc.updatedAt, "updatedAt");
    assertAbsent(doc, "commitSha", "a new order");
    assertAbsent(doc, "prUrl", "a new order");
    s.createdAt = doc.createdAt;

    assert.deepEqual(await listByStatus("draft"), [s.orderId]);

    // The default status is submitted; seed 001's "queued" is stored as submitted.
    const plain = await client.mutation(api.workOrders.create, { sessionId: s.sessionId, title: "Default" });
    assert.equal((await client.query(api.workOrders.get, { workOrderId: plain })).status, "submitted");
    const queued = await client.mutation(api.workOrders.create, {
      sessionId: s.sessionId,
      title: "Queued",
      status: "queued",
    });
    assert.equal((await client.query(api.workOrders.get, { workOrderId: queued })).status, "submitted");
    s.extra = [plain, queued];
  });

  test("draft -> submitted -> accepted -> running -> succeeded; listByStatus follows", async () => {
    const { client } = ctx;
    const workOrderId = need(s.orderId, "orderId");

    // A draft may only be submitted (or canceled / failed).
    await expectAppError(
      client.mutation(api.workOrders.updateStatus, { workOrderId, status: "accepted" }),
      "InvalidTransition",
      { from: "draft", to: "accepted" },
    );

    let previous = "draft";
    let lastUpdated = s.createdAt;
    for (const status of ["submitted", "accepted", "running", "succeeded"]) {
      await tick();
      const doc = await client.mutation(api.workOrders.updateStatus, { workOrderId, status });
      assert.equal(doc._id, workOrderId, "updateStatus returns the updated document");
      assert.equal(doc.status, status);
      assert.equal(doc.createdAt, s.createdAt, "createdAt never changes");
      assert.ok(doc.updatedAt > lastUpdated, `updatedAt moves on (${doc.updatedAt} > ${lastUpdated})`);
      lastUpdated = doc.updatedAt;
      assert.ok(!(await listByStatus(previous)).includes(workOrderId), `no longer listed as ${previous}`);
      assert.ok((await listByStatus(status)).includes(workOrderId), `listed as ${status}`);
      previous = status;
    }
    assert.deepEqual(await listByStatus("draft"), []);
    assert.deepEqual(await listByStatus("succeeded"), [workOrderId]);

    await expectAppError(
      client.mutation(api.workOrders.updateStatus, { workOrderId, status: "canceled" }),
      "InvalidTransition",
      { from: "succeeded", to: "canceled" },
    );
    const same = await client.mutation(api.workOrders.updateStatus, { workOrderId, status: "succeeded" });
    assert.equal(same.status, "succeeded");
    assert.equal(same.updatedAt, lastUpdated, "setting the current status again is a no-op");
  });

  test("workOrders:updateResult sets commitSha and prUrl", async () => {
    const { client } = ctx;
    const workOrderId = need(s.orderId, "orderId");
    const commitSha = "4e1f0c9b2a7d";
    const prUrl = "https://github.com/proompteng/lab/pull/1234";
    const returned = await client.mutation(api.workOrders.updateResult, { workOrderId, commitSha, prUrl });
    assert.equal(returned._id, workOrderId);
    assert.equal(returned.commitSha, commitSha);
    assert.equal(returned.prUrl, prUrl);
    const doc = await client.query(api.workOrders.get, { workOrderId });
    assert.equal(doc.commitSha, commitSha);
    assert.equal(doc.prUrl, prUrl);
    assert.equal(doc.status, "succeeded", "the result does not change the status");
    assert.deepEqual(doc.workflowArgs, workflowArgs);
  });

  test("workOrders:listByStatus: most recently updated first", async () => {
    const { client } = ctx;
    const sessionId = need(s.sessionId, "sessionId");
    const [plain, queued] = need(s.extra, "extra orders");
    await tick();
    const a = await client.mutation(api.workOrders.create, { sessionId, title: "A" });
    await tick();
    const b = await client.mutation(api.workOrders.create, { sessionId, title: "B" });
    await tick();
    const c = await client.mutation(api.workOrders.create, { sessionId, title: "C" });
    assert.deepEqual(await listByStatus("submitted"), [c, b, a, queued, plain]);

    await tick();
    await client.mutation(api.workOrders.updateStatus, { workOrderId: b, status: "accepted" });
    await tick();
    await client.mutation(api.workOrders.updateStatus, { workOrderId: plain, status: "accepted" });
    await tick();
    await client.mutation(api.workOrders.updateStatus, { workOrderId: a, status: "accepted" });
    assert.deepEqual(await listByStatus("submitted"), [c, queued], "moved orders leave the list");
    assert.deepEqual(await listByStatus("accepted"), [a, plain, b], "most recently updated first");

    await tick();
    await client.mutation(api.workOrders.updateStatus, { workOrderId: plain, status: "canceled" });
    assert.deepEqual(await listByStatus("accepted"), [a, b]);
    assert.deepEqual(await listByStatus("canceled"), [plain]);

    const limited = await client.query(api.workOrders.listByStatus, { status: "accepted", limit: 1 });
    assert.deepEqual(ids(limited), [a]);
  });

  test("workOrders:listBySession with paginationOpts returns every order exactly once", async () => {
    const { client } = ctx;
    const sessionId = await client.mutation(api.chatSessions.create, { userId: "op", title: "Paged" });
    const created = [];
    for (let i = 0; i < 8; i++) {
      created.push(await client.mutation(api.workOrders.create, { sessionId, title: `order ${i}` }));
      await tick();
    }
    const newestFirst = created.slice().reverse();
    const all = await client.query(api.workOrders.listBySession, { sessionId });
    assert.deepEqual(ids(all), newestFirst, "listBySession: newest first");

    const seen = [];
    const extra = [];
    let cursor = null;
    let pages = 0;
    for (;;) {
      const result = await client.query(api.workOrders.listBySession, {
        sessionId,
        paginationOpts: { numItems: 3, cursor },
      });
      pages += 1;
      assert.ok(result && Array.isArray(result.page), `a page object: ${JSON.stringify(result)}`);
      assert.equal(typeof result.isDone, "boolean");
      assert.equal(typeof result.continueCursor, "string");
      assert.ok(result.page.length <= 3, "at most numItems per page");
      seen.push(...ids(result.page));
      if (result.isDone) break;
      assert.ok(pages < 10, "pagination terminates");
      // New orders arrive between pages.
      extra.push(await client.mutation(api.workOrders.create, { sessionId, title: `late ${pages}` }));
      await tick();
      cursor = result.continueCursor;
    }
    assert.equal(new Set(seen).size, seen.length, `no order twice: ${seen}`);
    assert.deepEqual(
      seen,
      newestFirst,
      "every order that existed when the walk started, exactly once, newest first; " +
        "orders created later are newer than the cursor",
    );
    assert.ok(pages >= 3, `8 orders in pages of 3 take at least 3 pages, took ${pages}`);

    const afterwards = await client.query(api.workOrders.listBySession, { sessionId });
    assert.deepEqual(ids(afterwards), [...extra.slice().reverse(), ...newestFirst]);
  });

  test(
    "work order state_change events",
    { skip: "events of a work order alone are listed by no public query (only events:listByRun)" },
    () => {},
  );
});

// ---------------------------------------------------------------------------
// Seed 003: workspace (teams, repos, projects, sessions by repo, messages with
// streaming and committed changes).

describe("seed 003: workspace", () => {
  const ctx = useServer();
  const s = {};

  test("teams:create, repos:create, projects:get, projects:listByTeam", async () => {
    const { client } = ctx;
    s.teamId = await client.mutation(api.teams.create, { name: "Platform" });
    s.otherTeamId = await client.mutation(api.teams.create, { name: "Research" });
    s.repoId = await client.mutation(api.repos.create, {
      teamId: s.teamId,
      githubOwner: "proompteng",
      githubRepo: "lab",
      defaultBranch: "main",
      pushStrategy: "pr",
    });
    s.repo2Id = await client.mutation(api.repos.create, {
      teamId: s.teamId,
      githubOwner: "proompteng",
      githubRepo: "jangar",
      pushStrategy: "direct",
    });
    s.otherRepoId = await client.mutation(api.repos.create, {
      teamId: s.otherTeamId,
      githubOwner: "research",
      githubRepo: "notebooks",
    });

    const repo = await client.query(api.projects.get, { repoId: s.repoId });
    assert.equal(repo._id, s.repoId);
    assert.equal(repo.teamId, s.teamId);
    assert.equal(repo.githubOwner, "proompteng");
    assert.equal(repo.githubRepo, "lab");
    assert.equal(repo.defaultBranch, "main");
    assert.equal(repo.pushStrategy, "pr");
    assertTimestamp(repo.createdAt, "repo.createdAt");

    const repos = await client.query(api.projects.listByTeam, { teamId: s.teamId });
    assert.deepEqual(ids(repos).sort(), [s.repoId, s.repo2Id].sort(), "the team's two repos");
    assert.deepEqual(
      repos.map((r) => `${r.githubOwner}/${r.githubRepo}:${r.pushStrategy}`).sort(),
      ["proompteng/jangar:direct", "proompteng/lab:pr"],
    );
    const others = await client.query(api.projects.listByTeam, { teamId: s.otherTeamId });
    assert.deepEqual(ids(others), [s.otherRepoId]);

    await assert.rejects(
      client.mutation(api.repos.create, {
        teamId: s.teamId,
        githubOwner: "x",
        githubRepo: "y",
        pushStrategy: "force",
      }),
      /pushStrategy/,
      "pushStrategy is direct or pr",
    );
  });

  test("sessions:create {repoId, userId}; sessions:listByRepo most recently active first", async () => {
    const { client } = ctx;
    const repoId = need(s.repoId, "repoId");
    s.sessions = [];
    for (let i = 0; i < 3; i++) {
      s.sessions.push(await client.mutation(api.sessions.create, { repoId, userId: "dev-1" }));
      await tick();
    }
    s.foreignSession = await client.mutation(api.sessions.create, {
      repoId: need(s.otherRepoId, "otherRepoId"),
      userId: "dev-2",
    });
    const [s1, s2, s3] = s.sessions;

    const session = await client.query(api.sessions.get, { sessionId: s1 });
    assert.equal(session._id, s1);
    assert.equal(session.title, "New session", "the default title");
    assert.equal(session.repoId, repoId);
    assert.equal(session.userId, "dev-1");
    assertTimestamp(session.createdAt, "session.createdAt");
    assertTimestamp(session.lastActiveAt, "session.lastActiveAt");
    assertAbsent(session, "firstMessage", "a new session");

    const byRepo = async () => ids(await client.query(api.sessions.listByRepo, { repoId }));
    assert.deepEqual(await byRepo(), [s3, s2, s1]);

    await tick();
    assert.equal(await client.mutation(api.sessions.updateLastActive, { sessionId: s1 }), null);
    const touched = await client.query(api.sessions.get, { sessionId: s1 });
    assert.ok(touched.lastActiveAt > session.lastActiveAt, "updateLastActive moves lastActiveAt");
    assert.deepEqual(await byRepo(), [s1, s3, s2], "updateLastActive reorders");

    await tick();
    s.firstMessageId = await client.mutation(api.messages.send, {
      sessionId: s2,
      role: "user",
      content: "Add a dark mode toggle to the settings page",
    });
    assert.deepEqual(await byRepo(), [s2, s1, s3], "messages:send makes the session most recently active");

    assert.deepEqual(
      ids(await client.query(api.sessions.listByRepo, { repoId: s.otherRepoId })),
      [s.foreignSession],
    );
    assert.deepEqual(ids(await client.query(api.sessions.listByRepo, { repoId, limit: 2 })), [s2, s1]);
  });

  test("messages:send sets firstMessage once; messages:list oldest first", async () => {
    const { client } = ctx;
    const sessionId = need(s.sessions?.[1], "session 2");
    const first = need(s.firstMessageId, "first message");
    let session = await client.query(api.sessions.get, { sessionId });
    assert.equal(session.firstMessage, "Add a dark mode toggle to the settings page");

    await tick();
    s.secondMessageId = await client.mutation(api.messages.send, {
      sessionId,
      role: "assistant",
      content: "On it. I will add a ThemeToggle component.",
    });
    await tick();
    s.thirdMessageId = await client.mutation(api.messages.send, {
      sessionId,
      role: "user",
      content: "Use the system preference by default.",
    });
    session = await client.query(api.sessions.get, { sessionId });
    assert.equal(session.firstMessage, "Add a dark mode toggle to the settings page", "set by the first message only");

    const list = await client.query(api.messages.list, { sessionId });
    assert.deepEqual(ids(list), [first, s.secondMessageId, s.thirdMessageId], "oldest first");
    assert.deepEqual(
      list.map((m) => [m.role, m.content, m.sessionId]),
      [
        ["user", "Add a dark mode toggle to the settings page", sessionId],
        ["assistant", "On it. I will add a ThemeToggle component.", sessionId],
        ["user", "Use the system preference by default.", sessionId],
      ],
    );
    for (const m of list) assertTimestamp(m.createdAt, "message.createdAt");
  });

  test("a streamed assistant message: createStreaming, deltas (watched live), finalize, commit", async () => {
    const { client } = ctx;
    const sessionId = need(s.sessions?.[1], "session 2");
    const live = ctx.liveClient();

    // Watch messages:list live and keep every content the streamed message shows.
    const seen = [];
    let latest;
    let messageId;
    const unsubscribe = live.onUpdate(api.messages.list, { sessionId }, (list) => {
      latest = list;
      const m = messageId && list.find((x) => x._id === messageId);
      if (m && seen[seen.length - 1] !== m.content) seen.push(m.content);
    });
    const shows = (pred, what) => waitForValue(live, api.messages.list, { sessionId }, pred, what);

    await tick();
    messageId = await client.mutation(api.messages.createStreaming, { sessionId });
    s.streamId = messageId;
    const created = (await client.query(api.messages.list, { sessionId })).find((m) => m._id === messageId);
    assert.ok(created, "the streaming message is listed");
    assert.equal(created.role, "assistant", "role defaults to assistant");
    assert.equal(created.content, "");
    assert.equal(created.streaming, true);
    await shows((list) => list.some((m) => m._id === messageId), "the streaming message, live");

    const deltas = ["Added ", "`ThemeToggle` ", "and wired it ", "to the settings page."];
    let expected = "";
    for (const delta of deltas) {
      assert.equal(await client.mutation(api.messages.appendStreamingContent, { messageId, delta }), null);
      expected += delta;
      const want = expected;
      await shows(
        (list) => list.find((m) => m._id === messageId)?.content === want,
        `content ${JSON.stringify(want)} live`,
      );
    }
    const prefixes = deltas.map((_, i) => deltas.slice(0, i + 1).join(""));
    assert.deepEqual(
      seen.filter((c) => c !== ""),
      prefixes,
      `the live query showed the content growing delta by delta: ${JSON.stringify(seen)}`,
    );

    const files = [
      { path: "src/components/ThemeToggle.tsx", status: "added", additions: 42, deletions: 0 },
      { path: "src/routes/settings.tsx", status: "modified", additions: 3, deletions: 1 },
    ];
    assert.equal(
      await client.mutation(api.messages.finalizeStreaming, { messageId, changes: { files, committed: false } }),
      null,
    );
    const finalized = await shows(
      (list) => list.find((m) => m._id === messageId)?.streaming === false,
      "streaming: false live",
    );
    unsubscribe();
    const done = finalized.find((m) => m._id === messageId);
    assert.equal(done.content, deltas.join(""), "the content is the concatenation of the deltas");
    assert.equal(done.role, "assistant");
    assert.deepEqual(done.changes, { files, committed: false });
    assert.ok(latest !== undefined);

    await expectAppError(
      client.mutation(api.messages.appendStreamingContent, { messageId, delta: " (late)" }),
      "Conflict",
    );
    const afterLate = (await client.query(api.messages.list, { sessionId })).find((m) => m._id === messageId);
    assert.equal(afterLate.content, deltas.join(""), "a rejected delta changes nothing");
    assert.equal(afterLate.streaming, false);

    const prUrl = "https://github.com/proompteng/lab/pull/77";
    assert.equal(
      await client.mutation(api.messages.markChangesCommitted, { messageId, commitSha: "c0ffee1234", prUrl }),
      null,
    );
    const committed = (await client.query(api.messages.list, { sessionId })).find((m) => m._id === messageId);
    assert.deepEqual(committed.changes, { files, committed: true, commitSha: "c0ffee1234", prUrl });
    assert.equal(committed.content, deltas.join(""));

    await expectAppError(
      client.mutation(api.messages.markChangesCommitted, {
        messageId: need(s.firstMessageId, "first message"),
        commitSha: "deadbeef",
      }),
      "NoChanges",
    );
    const untouched = (await client.query(api.messages.list, { sessionId })).find((m) => m._id === s.firstMessageId);
    assertAbsent(untouched, "changes", "a message without changes");

    const session = await client.query(api.sessions.get, { sessionId });
    assert.equal(session.firstMessage, "Add a dark mode toggle to the settings page");
  });

  test("messages:send with changes; markChangesCommitted without prUrl", async () => {
    const { client } = ctx;
    const sessionId = need(s.sessions?.[2], "session 3");
    const changes = { files: ["README.md"], committed: false };
    const messageId = await client.mutation(api.messages.send, {
      sessionId,
      role: "assistant",
      content: "Updated the README.",
      changes,
    });
    let [m] = await client.query(api.messages.list, { sessionId });
    assert.equal(m._id, messageId);
    assert.deepEqual(m.changes, changes);
    const session = await client.query(api.sessions.get, { sessionId });
    assert.equal(session.firstMessage, "Updated the README.");

    assert.equal(await client.mutation(api.messages.markChangesCommitted, { messageId, commitSha: "abc1234" }), null);
    [m] = await client.query(api.messages.list, { sessionId });
    assert.deepEqual(m.changes, { files: ["README.md"], committed: true, commitSha: "abc1234" });
  });
});

// ---------------------------------------------------------------------------
// Seed 004: the research agent (threads, tool calls, approvals, artifacts over
// raw fetch, agent session state).

describe("seed 004: research agent", () => {
  const ctx = useServer();
  const s = {};

  test("threads:create, threads:append, messages:list {threadId}", async () => {
    const { client } = ctx;
    s.threadId = await client.mutation(api.threads.create, { userId: "researcher-1", title: "GPU pricing" });
    const thread = await client.query(api.threads.get, { threadId: s.threadId });
    assert.equal(thread._id, s.threadId);
    assert.equal(thread.userId, "researcher-1");
    assert.equal(thread.title, "GPU pricing");

    s.messageIds = [];
    const turns = [
      { role: "user", content: "Compare H100 rental prices across three clouds." },
      { role: "assistant", content: "I will search the public price lists first." },
      { role: "tool", content: '{"results": 3}' },
    ];
    for (const turn of turns) {
      s.messageIds.push(await client.mutation(api.threads.append, { threadId: s.threadId, ...turn }));
      await tick();
    }
    const list = await client.query(api.messages.list, { threadId: s.threadId });
    assert.deepEqual(ids(list), s.messageIds, "oldest first");
    assert.deepEqual(
      list.map((m) => [m.role, m.content, m.sessionId]),
      turns.map((t) => [t.role, t.content, s.threadId]),
    );

    s.otherThreadId = await client.mutation(api.threads.create, { userId: "researcher-2", title: "Other" });
    assert.deepEqual(await client.query(api.messages.list, { threadId: s.otherThreadId }), []);
  });

  test("toolCalls:record, complete, listBySession", async () => {
    const { client } = ctx;
    const sessionId = need(s.threadId, "threadId");
    const input = { query: "H100 hourly price", sites: ["aws", "gcp", "azure"], limit: 5 };
    s.call1 = await client.mutation(api.toolCalls.record, { sessionId, toolName: "web_search", input });
    let [call] = await client.query(api.toolCalls.listBySession, { sessionId });
    assert.equal(call._id, s.call1);
    assert.equal(call.sessionId, sessionId);
    assert.equal(call.toolName, "web_search");
    assert.deepEqual(call.input, input);
    assert.equal(call.status, "started");
    assertAbsent(call, "durationMs", "a started call");
    assertTimestamp(call.createdAt, "toolCall.createdAt");

    await sleep(20);
    const output = { results: [{ cloud: "aws", usd: 3.9 }, { cloud: "gcp", usd: 3.7 }] };
    assert.equal(
      await client.mutation(api.toolCalls.complete, { toolCallId: s.call1, output, status: "succeeded" }),
      null,
    );
    [call] = await client.query(api.toolCalls.listBySession, { sessionId });
    assert.equal(call.status, "succeeded");
    assert.deepEqual(call.output, output);
    assert.equal(typeof call.durationMs, "number", `durationMs: ${JSON.stringify(call.durationMs)}`);
    assert.ok(call.durationMs >= 0, `durationMs ${call.durationMs} >= 0`);
    const durationMs = call.durationMs;

    await expectAppError(
      client.mutation(api.toolCalls.complete, { toolCallId: s.call1, status: "failed" }),
      "InvalidTransition",
      { from: "succeeded", to: "failed" },
    );
    // The same status again is a no-op.
    await sleep(5);
    assert.equal(await client.mutation(api.toolCalls.complete, { toolCallId: s.call1, status: "succeeded" }), null);
    [call] = await client.query(api.toolCalls.listBySession, { sessionId });
    assert.equal(call.status, "succeeded");
    assert.equal(call.durationMs, durationMs, "a no-op keeps durationMs");
    assert.deepEqual(call.output, output);

    await tick();
    s.call2 = await client.mutation(api.toolCalls.record, {
      sessionId,
      toolName: "fetch_page",
      input: "https://example.com/pricing",
    });
    await client.mutation(api.toolCalls.complete, { toolCallId: s.call2, status: "failed", output: { error: 404 } });
    const calls = await client.query(api.toolCalls.listBySession, { sessionId });
    assert.deepEqual(ids(calls), [s.call1, s.call2], "oldest first");
    assert.deepEqual(
      calls.map((c) => [c.toolName, c.status]),
      [
        ["web_search", "succeeded"],
        ["fetch_page", "failed"],
      ],
    );
    assert.equal(calls[1].input, "https://example.com/pricing");
    assert.ok(calls[1].durationMs >= 0);
    assert.deepEqual(await client.query(api.toolCalls.listBySession, { sessionId: s.otherThreadId }), []);
  });

  test("approvalRequests: create, listPending, decide, decide again", async () => {
    const { client } = ctx;
    const sessionId = need(s.threadId, "threadId");
    const planContent = "# Plan\n1. Collect list prices\n2. Normalise to USD/hour\n3. Report";
    s.approval = await client.mutation(api.approvalRequests.create, { sessionId, planContent });
    let doc = await client.query(api.approvalRequests.get, { approvalRequestId: s.approval });
    assert.equal(doc._id, s.approval);
    assert.equal(doc.sessionId, sessionId);
    assert.equal(doc.planContent, planContent);
    assert.equal(doc.status, "pending");
    assertAbsent(doc, "decidedAt", "a pending request");
    assertTimestamp(doc.createdAt, "approval.createdAt");

    let pending = await client.query(api.approvalRequests.listPending, { sessionId });
    assert.deepEqual(ids(pending), [s.approval]);
    assert.equal(pending[0].status, "pending");
    assert.ok(ids(await client.query(api.approvalRequests.listPending, {})).includes(s.approval));

    await tick();
    doc = await client.mutation(api.approvalRequests.decide, {
      approvalRequestId: s.approval,
      decision: "approved",
      decidedBy: "alice",
      reason: "Looks good",
    });
    assert.equal(doc._id, s.approval, "decide returns the updated document");
    assert.equal(doc.status, "approved");
    assert.equal(doc.decidedBy, "alice");
    assert.equal(doc.reason, "Looks good");
    assertTimestamp(doc.decidedAt, "approval.decidedAt");

    pending = await client.query(api.approvalRequests.listPending, { sessionId });
    assert.deepEqual(pending, [], "no longer pending");

    await expectAppError(
      client.mutation(api.approvalRequests.decide, { approvalRequestId: s.approval, decision: "rejected" }),
      "InvalidTransition",
      { from: "approved", to: "rejected" },
    );
    doc = await client.query(api.approvalRequests.get, { approvalRequestId: s.approval });
    assert.equal(doc.status, "approved");
    assert.equal(doc.decidedBy, "alice");
  });

  test("approvalRequests: a request past expiresAt reads as expired and cannot be decided", async () => {
    const { client } = ctx;
    const sessionId = need(s.threadId, "threadId");
    const expired = await client.mutation(api.approvalRequests.create, {
      sessionId,
      planContent: "stale plan",
      expiresAt: Date.now() - 60_000,
    });
    await tick();
    const open = await client.mutation(api.approvalRequests.create, {
      sessionId,
      planContent: "fresh plan",
      expiresAt: Date.now() + 60 * 60_000,
    });
    await tick();
    const soon = await client.mutation(api.approvalRequests.create, {
      sessionId,
      planContent: "short-lived plan",
      expiresAt: Date.now() + 400,
    });

    const doc = await client.query(api.approvalRequests.get, { approvalRequestId: expired });
    assert.equal(doc.status, "expired");
    assert.equal(doc.planContent, "stale plan");
    assert.equal((await client.query(api.approvalRequests.get, { approvalRequestId: open })).status, "pending");
    assert.equal((await client.query(api.approvalRequests.get, { approvalRequestId: soon })).status, "pending");

    assert.deepEqual(
      ids(await client.query(api.approvalRequests.listPending, { sessionId })),
      [open, soon],
      "pending, oldest first, without the expired one",
    );

    await expectAppError(
      client.mutation(api.approvalRequests.decide, { approvalRequestId: expired, decision: "approved" }),
      "InvalidTransition",
      { from: "expired", to: "approved" },
    );
    assert.equal((await client.query(api.approvalRequests.get, { approvalRequestId: expired })).status, "expired");

    // The short-lived one expires while nobody writes to it.
    await sleep(600);
    assert.equal((await client.query(api.approvalRequests.get, { approvalRequestId: soon })).status, "expired");
    assert.deepEqual(ids(await client.query(api.approvalRequests.listPending, { sessionId })), [open]);
    await expectAppError(
      client.mutation(api.approvalRequests.decide, { approvalRequestId: soon, decision: "rejected" }),
      "InvalidTransition",
      { from: "expired", to: "rejected" },
    );

    const decided = await client.mutation(api.approvalRequests.decide, {
      approvalRequestId: open,
      decision: "rejected",
      reason: "too expensive",
    });
    assert.equal(decided.status, "rejected");
    assert.equal(decided.reason, "too expensive");
    assertTimestamp(decided.decidedAt, "decidedAt");
    assert.deepEqual(await client.query(api.approvalRequests.listPending, { sessionId }), []);
  });

  test("artifacts:create and artifacts:update through seed 004's raw fetch", async () => {
    const { client, server } = ctx;
    const threadId = need(s.threadId, "threadId");
    const url = server.url;
    const content = "# Research plan\n- aws\n- gcp\n- azure";

    const artifactId = await seed004Mutation(url, "artifacts:create", { threadId, type: "plan", content });
    assert.equal(typeof artifactId, "string", `artifacts:create returns an id, got ${JSON.stringify(artifactId)}`);
    let list = await client.query(api.artifacts.listBySession, { sessionId: threadId });
    assert.deepEqual(ids(list), [artifactId]);
    assert.equal(list[0].type, "plan");
    assert.equal(list[0].content, content);
    assert.equal(list[0].sessionId, threadId);
    assertTimestamp(list[0].createdAt, "artifact.createdAt");

    const updated = `${content}\n- oracle`;
    const result = await seed004Mutation(url, "artifacts:update", { artifactId, content: updated });
    assert.equal(result, null, "artifacts:update returns null");

    await tick();
    const reportId = await seed004Mutation(url, "artifacts:create", {
      threadId,
      type: "report",
      content: "H100: gcp is cheapest",
      status: "draft",
    });
    await seed004Mutation(url, "artifacts:update", { artifactId: reportId, status: "final" });

    list = await client.query(api.artifacts.listBySession, { sessionId: threadId });
    assert.deepEqual(ids(list), [artifactId, reportId], "oldest first");
    assert.deepEqual(
      list.map((a) => [a.type, a.content, a.status]),
      [
        ["plan", updated, undefined],
        ["report", "H100: gcp is cheapest", "final"],
      ],
    );
    assert.deepEqual(await client.query(api.artifacts.listBySession, { sessionId: s.otherThreadId }), []);
  });

  test("agentSessions: upsert inserts then updates in place; updatePhase; getBySession", async () => {
    const { client } = ctx;
    const sessionId = need(s.threadId, "threadId");
    assert.equal(await client.query(api.agentSessions.getBySession, { sessionId }), null, "none yet");

    const id = await client.mutation(api.agentSessions.upsert, {
      sessionId,
      sdkSessionId: "sdk-1",
      phase: "planning",
      mode: "local",
    });
    let doc = await client.query(api.agentSessions.getBySession, { sessionId });
    assert.equal(doc._id, id);
    assert.equal(doc.sessionId, sessionId);
    assert.equal(doc.sdkSessionId, "sdk-1");
    assert.equal(doc.phase, "planning");
    assert.equal(doc.mode, "local");
    assertTimestamp(doc.createdAt, "agentSession.createdAt");

    const again = await client.mutation(api.agentSessions.upsert, { sessionId, sdkSessionId: "sdk-2" });
    assert.equal(again, id, "upsert on the same session returns the same id");
    doc = await client.query(api.agentSessions.getBySession, { sessionId });
    assert.equal(doc._id, id);
    assert.equal(doc.sdkSessionId, "sdk-2");
    assert.equal(doc.phase, "planning", "fields not passed are kept");
    assert.equal(doc.mode, "local");

    const plan = { steps: ["collect", "normalise", "report"], budgetUsd: 2.5 };
    assert.equal(await client.mutation(api.agentSessions.updatePhase, { sessionId, phase: "researching", plan }), null);
    doc = await client.query(api.agentSessions.getBySession, { sessionId });
    assert.equal(doc.phase, "researching");
    assert.deepEqual(doc.plan, plan);
    assert.equal(doc.sdkSessionId, "sdk-2");

    assert.equal(await client.mutation(api.agentSessions.updatePhase, { sessionId, phase: "complete" }), null);
    doc = await client.query(api.agentSessions.getBySession, { sessionId });
    assert.equal(doc.phase, "complete");
    assert.deepEqual(doc.plan, plan, "updatePhase without a plan keeps the plan");

    assert.equal(
      await client.query(api.agentSessions.getBySession, { sessionId: need(s.otherThreadId, "otherThreadId") }),
      null,
    );
    const otherId = await client.mutation(api.agentSessions.upsert, {
      sessionId: s.otherThreadId,
      sdkSessionId: "sdk-other",
    });
    assert.notEqual(otherId, id, "one agent session per chat session");
    assert.equal((await client.query(api.agentSessions.getBySession, { sessionId })).sdkSessionId, "sdk-2");
  });
});
