// The console in a real browser: Debian's headless Chromium driven by puppeteer-core, against a
// server seeded through the official client. Each view is checked against the seeded data and
// saved as a screenshot under target/console-screenshots/ (CI keeps them as artifacts).
//
// The steps share one server and one page and run in order.

import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { ConvexHttpClient } from "convex/browser";

import { launchBrowser } from "./browser.mjs";
import { REPO_ROOT, startServer } from "./server.mjs";

const ADMIN_KEY = "console-test-admin-key";
const SCREENSHOTS = path.join(REPO_ROOT, "target", "console-screenshots");
const WAIT_MS = 15_000;

const MINUTE = 60_000;

/**
 * A small control plane: two users' sessions with messages (one streaming), work orders in
 * most statuses, a finished run with a failed-then-retried step, a live run, artifacts, tool
 * calls and approvals (pending, expired, decided).
 */
async function seed(client) {
  const m = (path, args) => client.mutation(path, args);
  const team = await m("teams:create", { name: "Platform" });
  const repo = await m("repos:create", { teamId: team, githubOwner: "acme", githubRepo: "api", defaultBranch: "main" });
  const alice = await m("chatSessions:create", { userId: "alice", title: "Speed up the CI pipeline", repoId: repo });
  const bob = await m("chatSessions:create", { userId: "bob", title: "Fix the flaky login test" });
  await m("chatSessions:create", { userId: "alice", title: "Upgrade the ORM" });
  const ask = await m("chatMessages:append", {
    sessionId: alice,
    role: "user",
    content: "The CI takes 25 minutes. Cache the dependencies and split the test job in two.",
  });
  await m("chatMessages:append", {
    sessionId: alice,
    role: "assistant",
    content: "I will add a dependency cache keyed on the lockfile and shard the tests across two runners.",
  });
  const streaming = await m("messages:createStreaming", { sessionId: alice });
  await m("messages:appendStreamingContent", { messageId: streaming, delta: "Working on it: " });

  const order = (args) => m("workOrders:create", args);
  const ci = await m("workOrders:createFromMessage", {
    sessionId: alice,
    triggerMessageId: ask,
    summary: "Cache dependencies and shard the CI tests",
    repo: "acme/api",
    branchHint: "ci-speedup",
    workflowType: "codexTask",
  });
  const login = await order({ sessionId: bob, title: "Fix the flaky login test", targetRepo: "acme/web", targetBranch: "fix-login" });
  const docs = await order({ sessionId: alice, title: "Document the release process", status: "draft" });
  const orm = await order({ sessionId: alice, title: "Upgrade the ORM to v5", targetRepo: "acme/api" });
  const lint = await order({ sessionId: bob, title: "Turn on strict lint rules", targetRepo: "acme/web" });
  await order({ sessionId: bob, title: "Rotate the staging secrets", targetRepo: "acme/infra" });

  // A finished run: four steps over eleven minutes, the tests failing once before passing.
  const now = Date.now();
  const done = await m("runs:start", {
    workOrderId: login,
    temporalWorkflowId: `wo-${login}`,
    temporalRunId: "0195f1a2-run-1",
    taskQueue: "jangar",
    workerId: "worker-7",
    repo: "acme/web",
    branch: "fix-login",
  });
  const t0 = now - 14 * MINUTE;
  const step = (runId, name, kind, status, from, to, extra = {}) =>
    m("steps:appendOrUpdate", { runId, name, kind, status, startedAt: from, ...(to ? { endedAt: to } : {}), ...extra });
  await step(done, "checkout", "activity", "succeeded", t0, t0 + 0.5 * MINUTE);
  await step(done, "install", "activity", "succeeded", t0 + 0.5 * MINUTE, t0 + 3 * MINUTE);
  await step(done, "test", "check", "failed", t0 + 3 * MINUTE, t0 + 7 * MINUTE, { logUrl: "https://ci.example/logs/1" });
  await step(done, "test", "check", "running", t0 + 7 * MINUTE);
  await step(done, "test", "check", "succeeded", t0 + 7 * MINUTE, t0 + 10 * MINUTE);
  await step(done, "open-pr", "hook", "succeeded", t0 + 10 * MINUTE, t0 + 11 * MINUTE);
  await m("artifacts:add", { runId: done, type: "pr", url: "https://github.com/acme/web/pull/482", label: "Fix the flaky login test" });
  await m("artifacts:add", { runId: done, type: "diff", label: "3 files changed", content: "--- a/login.spec.ts\n+++ b/login.spec.ts\n@@ -1 +1 @@\n-await sleep(100)\n+await page.waitForURL('/home')" });
  await m("events:append", { runId: done, type: "comment", data: { text: "Retried the test step once: a timing race in the login spec." } });
  await m("toolCalls:record", { sessionId: bob, runId: done, toolName: "bash", input: { command: "npm test -- login" } }).then((id) =>
    m("toolCalls:complete", { toolCallId: id, status: "succeeded", output: { exitCode: 0 } }),
  );
  await m("runs:updateStatus", { runId: done, status: "succeeded", prUrl: "https://github.com/acme/web/pull/482", commitSha: "9f1c2ab7e4d0" });

  // A failed run and a live one.
  const failed = await m("runs:start", { workOrderId: lint, temporalWorkflowId: `wo-${lint}`, repo: "acme/web", branch: "strict-lint" });
  await step(failed, "lint", "check", "failed", now - 9 * MINUTE, now - 8 * MINUTE);
  await m("runs:updateStatus", { runId: failed, status: "failed", failureReason: { message: "412 lint errors", type: "LintFailed" } });
  const live = await m("runs:start", {
    workOrderId: ci,
    temporalWorkflowId: `wo-${ci}`,
    taskQueue: "jangar",
    workerId: "worker-2",
    repo: "acme/api",
    branch: "ci-speedup",
  });
  await step(live, "checkout", "activity", "succeeded", now - 4 * MINUTE, now - 3.8 * MINUTE);
  await step(live, "install", "activity", "succeeded", now - 3.8 * MINUTE, now - 1.5 * MINUTE);
  await step(live, "test-shard-1", "check", "running", now - 1.5 * MINUTE);
  await m("toolCalls:record", { sessionId: alice, runId: live, toolName: "edit_file", input: { path: ".github/workflows/ci.yml" } });
  await m("workOrders:updateStatus", { workOrderId: orm, status: "accepted" });

  const pending = await m("approvalRequests:create", {
    sessionId: alice,
    runId: live,
    workOrderId: ci,
    planContent: "1. Add actions/cache keyed on package-lock.json\n2. Split `npm test` into two shards\n3. Open a PR against main",
    expiresAt: now + 60 * MINUTE,
  });
  const expired = await m("approvalRequests:create", { sessionId: bob, planContent: "Force-push the release branch", expiresAt: now + 1500 });
  const decided = await m("approvalRequests:create", { sessionId: bob, planContent: "Delete the stale preview environments" });
  await m("approvalRequests:decide", { approvalRequestId: decided, decision: "approved", decidedBy: "carol", reason: "They cost money" });
  await m("agentSessions:upsert", { sessionId: alice, sdkSessionId: "sdk-31c9", phase: "planning", mode: "sandbox", plan: { steps: ["cache", "shard", "pr"] } });
  return { team, repo, alice, bob, streaming, ci, login, docs, orm, lint, done, failed, live, pending, expired, decided };
}

describe("the console in a browser", () => {
  let server;
  let client;
  let browser;
  let page;
  let seeded;

  const url = (view = "") => `${server.url}/console${view}`;
  const shot = (name) => page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
  const text = (selector) => page.$eval(selector, (e) => e.textContent);
  const waitForText = (selector, wanted) =>
    page.waitForFunction(
      (selector, wanted) => [...document.querySelectorAll(selector)].some((e) => e.textContent.includes(wanted)),
      { timeout: WAIT_MS },
      selector,
      wanted,
    );

  before(async () => {
    await mkdir(SCREENSHOTS, { recursive: true });
    server = await startServer({ env: { JANGAR_ADMIN_KEY: ADMIN_KEY } });
    client = new ConvexHttpClient(server.url);
    client.setAdminAuth(ADMIN_KEY);
    seeded = await seed(client);
    browser = await launchBrowser();
    page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 800 });
    page.on("pageerror", (error) => console.error("page error:", error.message));
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test("asks for an admin key, refuses a wrong one and opens on the runs view with the right one", async () => {
    await page.goto(url(), { waitUntil: "domcontentloaded" });
    await page.waitForSelector("#admin-key", { timeout: WAIT_MS });
    await page.type("#admin-key", "not-the-key");
    await page.click("button[type=submit]");
    await waitForText("[role=alert]", "did not accept");
    await page.$eval("#admin-key", (input) => (input.value = ""));
    await page.type("#admin-key", ADMIN_KEY);
    await page.click("button[type=submit]");
    await page.waitForSelector("[data-counter=running]", { timeout: WAIT_MS });
    assert.equal(await page.evaluate(() => sessionStorage.getItem("jangar.console.adminKey")), ADMIN_KEY);
    assert.equal(await text("[data-counter=running] .counter-value"), "1");
    assert.equal(await text("[data-counter=succeeded] .counter-value"), "1");
    assert.equal(await text("[data-counter=failed] .counter-value"), "1");
    await waitForText("section[aria-labelledby=active-runs] [data-run]", "Cache dependencies and shard the CI tests");
    await waitForText("section[aria-labelledby=recent-runs] [data-run]", "Fix the flaky login test");
    assert.ok((await text("main")).includes("PR #482"), "the finished run links its pull request");
    await page.waitForSelector("[data-connection=live]", { timeout: WAIT_MS });
    await shot("runs");
  });

  test("filters the runs by status and repo, typing without losing the field", async () => {
    const rows = () => page.$$eval("[data-run]", (rows) => rows.map((r) => r.dataset.run));
    await page.click("input[name=repo]");
    await page.keyboard.type("acme/web");
    await page.waitForFunction(() => window.location.search === "?repo=acme%2Fweb", { timeout: WAIT_MS });
    await page.waitForFunction(() => document.querySelectorAll("[data-run]").length === 2, { timeout: WAIT_MS });
    assert.deepEqual((await rows()).sort(), [seeded.done, seeded.failed].sort());
    assert.equal(await page.evaluate(() => document.activeElement?.name), "repo", "the field keeps the focus");
    // A counter keeps the repo filter and adds its status.
    await page.click("[data-counter=failed]");
    await page.waitForFunction(() => window.location.search === "?status=failed&repo=acme%2Fweb", { timeout: WAIT_MS });
    await waitForText("[data-run]", "Turn on strict lint rules");
    assert.deepEqual(await rows(), [seeded.failed]);
    await page.click("[data-counter=succeeded]");
    await page.waitForSelector(`[data-run="${seeded.done}"]`, { timeout: WAIT_MS });
    assert.deepEqual(await rows(), [seeded.done]);
    // Back returns to the failed runs, and the field to what the URL says.
    await page.goBack();
    await page.waitForSelector(`[data-run="${seeded.failed}"]`, { timeout: WAIT_MS });
    assert.equal(await page.$eval("input[name=repo]", (input) => input.value), "acme/web");
  });

  test("switches views with the keyboard", async () => {
    await page.keyboard.press("Escape");
    await page.keyboard.press("2");
    await page.waitForSelector("[data-column=draft]", { timeout: WAIT_MS });
    assert.ok(page.url().endsWith("/console/work-orders"), page.url());
    await page.keyboard.press("j");
    assert.equal(await page.evaluate(() => document.activeElement?.dataset.primary !== undefined), true, "j focuses the first row");
    await page.keyboard.press("1");
    await page.waitForSelector("[data-counter=running]", { timeout: WAIT_MS });
  });

  test("shows a run's timeline, and it grows as the worker reports a step", async () => {
    await page.goto(url(`/runs/${seeded.done}`), { waitUntil: "domcontentloaded" });
    await page.waitForSelector("[data-step=checkout]", { timeout: WAIT_MS });
    const steps = await page.$$eval("[data-step]", (rows) => rows.map((r) => r.dataset.step));
    assert.deepEqual(steps, ["checkout", "install", "test", "open-pr"]);
    assert.ok((await text("[data-step=test]")).includes("attempt 2"), "the retried step shows its attempt");
    assert.equal(await text("[data-workflow-id]"), `wo-${seeded.login}`);
    const events = await page.$$eval("[data-event-seq]", (rows) => rows.map((r) => Number(r.dataset.eventSeq)));
    assert.deepEqual(events, [...events].sort((a, b) => a - b), "events in seq order");
    assert.ok((await text("main")).includes("3 files changed"));
    await shot("run-detail");

    await page.goto(url(`/runs/${seeded.live}`), { waitUntil: "domcontentloaded" });
    await page.waitForSelector("[data-step=test-shard-1]", { timeout: WAIT_MS });
    assert.equal(await page.$("[data-step=test-shard-2]"), null);
    await client.mutation("steps:appendOrUpdate", { runId: seeded.live, name: "test-shard-2", kind: "check", status: "running", startedAt: Date.now() });
    await page.waitForSelector("[data-step=test-shard-2]", { timeout: WAIT_MS });
    await client.mutation("steps:appendOrUpdate", { runId: seeded.live, name: "test-shard-1", status: "succeeded", endedAt: Date.now() });
    await page.waitForSelector("[data-step=test-shard-1].step-succeeded", { timeout: WAIT_MS });
    await shot("run-live");
  });

  test("moves work orders on the board with the catalogue's mutations", async () => {
    await page.goto(url("/work-orders"), { waitUntil: "domcontentloaded" });
    await page.waitForSelector(`[data-column=draft] [data-work-order="${seeded.docs}"]`, { timeout: WAIT_MS });
    await page.click(`[data-work-order="${seeded.docs}"] [data-action=Submit]`);
    await page.waitForSelector(`[data-column=submitted] [data-work-order="${seeded.docs}"]`, { timeout: WAIT_MS });
    assert.equal((await client.query("workOrders:get", { workOrderId: seeded.docs })).status, "submitted");
    await page.click(`[data-work-order="${seeded.orm}"] [data-action=Cancel]`);
    await page.waitForSelector(`[data-column=canceled] [data-work-order="${seeded.orm}"]`, { timeout: WAIT_MS });
    await shot("work-orders");
    // A retry is a new work order with the same request.
    await page.click(`[data-work-order="${seeded.orm}"] [data-action="Retry as new"]`);
    await waitForText(`[data-work-order="${seeded.orm}"] .notice`, "Created");
    const submitted = await client.query("workOrders:listByStatus", { status: "submitted" });
    assert.ok(submitted.some((o) => o.title === "Upgrade the ORM to v5" && o._id !== seeded.orm));
    // A work order's page: its runs and its events, oldest first.
    await page.goto(url(`/work-orders/${seeded.login}`), { waitUntil: "domcontentloaded" });
    await page.waitForSelector(`[data-run="${seeded.done}"]`, { timeout: WAIT_MS });
    await waitForText("section[aria-labelledby=events]", "succeeded");
    await shot("work-order");
  });

  test("decides an approval, and a client sees the decision", async () => {
    await page.goto(url("/approvals"), { waitUntil: "domcontentloaded" });
    await page.waitForSelector(`[data-approval="${seeded.pending}"]`, { timeout: WAIT_MS });
    assert.ok((await text(`[data-approval="${seeded.pending}"]`)).includes("Split `npm test` into two shards"));
    await waitForText(`[data-approval="${seeded.expired}"] .status`, "expired");
    assert.equal(await page.$(`[data-approval="${seeded.expired}"] [data-action=approve]`), null, "an expired request cannot be decided");
    await shot("approvals");
    await page.type(`[data-approval="${seeded.pending}"] input[name=reason]`, "Looks safe");
    await page.click(`[data-approval="${seeded.pending}"] [data-action=approve]`);
    await page.waitForSelector(`section[aria-labelledby=approved] [data-approval="${seeded.pending}"]`, { timeout: WAIT_MS });
    assert.equal(await page.$(`section[aria-labelledby=pending] [data-approval="${seeded.pending}"]`), null);
    const decided = await client.query("approvalRequests:get", { approvalRequestId: seeded.pending });
    assert.equal(decided.status, "approved");
    assert.equal(decided.reason, "Looks safe");
    // A request that arrives while the inbox is open shows up; rejecting it is seen by the client too.
    const late = await client.mutation("approvalRequests:create", { sessionId: seeded.bob, planContent: "Drop the users table" });
    await page.waitForSelector(`section[aria-labelledby=pending] [data-approval="${late}"]`, { timeout: WAIT_MS });
    await page.type(`[data-approval="${late}"] input[name=reason]`, "Never");
    await page.click(`[data-approval="${late}"] [data-action=reject]`);
    await page.waitForSelector(`section[aria-labelledby=rejected] [data-approval="${late}"]`, { timeout: WAIT_MS });
    const rejected = await client.query("approvalRequests:get", { approvalRequestId: late });
    assert.deepEqual([rejected.status, rejected.reason], ["rejected", "Never"]);
  });

  test("shows the sessions and a session's messages, a streaming one growing live", async () => {
    await page.goto(url("/sessions"), { waitUntil: "domcontentloaded" });
    await page.waitForSelector(`[data-session="${seeded.alice}"]`, { timeout: WAIT_MS });
    assert.equal((await page.$$("[data-session]")).length, 3);
    await shot("sessions");
    await page.click(`[data-session="${seeded.alice}"] a[data-primary]`);
    await page.waitForSelector(`[data-message="${seeded.streaming}"]`, { timeout: WAIT_MS });
    await client.mutation("messages:appendStreamingContent", { messageId: seeded.streaming, delta: "the cache is in place." });
    await waitForText(`[data-message="${seeded.streaming}"]`, "Working on it: the cache is in place.");
    assert.ok((await text("main")).includes("Cache dependencies and shard the CI tests"), "the session's work orders");
    assert.ok((await text("main")).includes("edit_file"), "the session's tool calls");
    assert.ok((await text("main")).includes("sdk-31c9"), "the agent's state");
    await shot("session");
    await page.goto(url("/sessions?user=bob"), { waitUntil: "domcontentloaded" });
    await page.waitForSelector(`[data-session="${seeded.bob}"]`, { timeout: WAIT_MS });
    assert.equal((await page.$$("[data-session]")).length, 1);
  });

  test("pages through 1,000 documents in both orders with no gap", async () => {
    // 1,000 teams besides the seeded one, in batches the server takes as one group each.
    for (let i = 0; i < 1000; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, (_, j) => client.mutation("teams:create", { name: `team-${String(i + j).padStart(4, "0")}` })),
      );
    }
    const readAll = async (order) => {
      await page.goto(url(`/data/teams?index=by_creation_time&order=${order}&size=100`), { waitUntil: "domcontentloaded" });
      const ids = [];
      for (let pageNumber = 1; ; pageNumber++) {
        await waitForText("[data-page-range]", `page ${pageNumber}`);
        await page.waitForSelector("[data-document]", { timeout: WAIT_MS });
        ids.push(...(await page.$$eval("[data-document]", (docs) => docs.map((d) => d.dataset.document))));
        if (pageNumber === 1 && order === "asc") await shot("data");
        const next = await page.$("[data-action=next]:not([disabled])");
        if (!next) break;
        await next.click();
      }
      return ids;
    };
    const expected = [];
    let cursor = null;
    for (;;) {
      const page = await client.query("_system/console/indexPage:default", {
        table: "teams",
        index: "by_creation_time",
        order: "asc",
        paginationOpts: { numItems: 1000, cursor },
      });
      expected.push(...page.page.map((d) => d._id));
      if (page.isDone) break;
      cursor = page.continueCursor;
    }
    assert.equal(expected.length, 1001);
    const ascending = await readAll("asc");
    assert.deepEqual(ascending, expected);
    const descending = await readAll("desc");
    assert.deepEqual(descending, [...expected].reverse());
    // Previous goes back to exactly the page before.
    await page.click("[data-action=previous]");
    await waitForText("[data-page-range]", "page 10");
    const tenth = await page.$$eval("[data-document]", (docs) => docs.map((d) => d.dataset.document));
    assert.deepEqual(tenth, descending.slice(900, 1000));
  });

  test("pages through an index with an equality prefix and a range", async () => {
    await page.goto(url(`/data/runs?index=by_status&eq=succeeded`), { waitUntil: "domcontentloaded" });
    await page.waitForSelector(`[data-document="${seeded.done}"]`, { timeout: WAIT_MS });
    assert.equal((await page.$$("[data-document]")).length, 1);
    // A range on updatedAt, typed into the form: one that holds the run, then ones that do not.
    const { updatedAt, _creationTime } = await client.query("runs:get", { runId: seeded.done });
    const documents = () => page.$$eval("[data-document]", (docs) => docs.map((d) => d.dataset.document));
    const range = async (lo, hi, hiOp = "lt") => {
      const query = new URLSearchParams({ index: "by_status", eq: "succeeded", lo: String(lo), hi: String(hi), hiOp });
      await page.goto(url(`/data/runs?${query}`), { waitUntil: "domcontentloaded" });
      await page.waitForSelector("[data-document], .empty", { timeout: WAIT_MS });
      return documents();
    };
    assert.deepEqual(await range(updatedAt, updatedAt, "lte"), [seeded.done], "≥ and ≤ the same instant");
    assert.deepEqual(await range(updatedAt, updatedAt, "lt"), [], "< excludes it");
    assert.deepEqual(await range(updatedAt + 1, updatedAt + 3600e3), []);
    await waitForText(".empty", "No document in this range");
    // Typed as an ISO date, through the form.
    await page.goto(url(`/data/runs?index=by_status&eq=succeeded`), { waitUntil: "domcontentloaded" });
    await page.waitForSelector("input[name=lo]", { timeout: WAIT_MS });
    await page.type("input[name=lo]", new Date(updatedAt - 60_000).toISOString());
    await page.click(".index-form button[type=submit]");
    await page.waitForFunction(() => new URLSearchParams(window.location.search).get("lo") !== null, { timeout: WAIT_MS });
    await page.waitForSelector(`[data-document="${seeded.done}"]`, { timeout: WAIT_MS });
    // After equal values on every field, the range bounds _creationTime.
    await page.goto(url(`/data/runs?index=by_creation_time&order=asc&lo=${_creationTime}`), { waitUntil: "domcontentloaded" });
    await page.waitForSelector("[data-document]", { timeout: WAIT_MS });
    const since = await documents();
    assert.equal(since[0], seeded.done);
    assert.ok(!since.includes(seeded.live) || since.indexOf(seeded.live) > 0);
    // Soft-deleted documents show only on request.
    await client.mutation("chatSessions:remove", { sessionId: seeded.bob });
    await page.goto(url(`/data/chat_sessions?index=by_user_recent&eq=bob`), { waitUntil: "domcontentloaded" });
    await waitForText(".empty", "show soft-deleted");
    await page.goto(url(`/data/chat_sessions?index=by_user_recent&eq=bob&deleted=1`), { waitUntil: "domcontentloaded" });
    await page.waitForSelector(`[data-document="${seeded.bob}"].deleted`, { timeout: WAIT_MS });
    // Ids link to the documents they name.
    await page.goto(url(`/data/runs/${seeded.done}`), { waitUntil: "domcontentloaded" });
    await waitForText("a.j-id", seeded.login);
    await page.$$eval("a.j-id", (links, id) => links.find((a) => a.textContent.includes(id)).click(), seeded.login);
    await waitForText("h1", seeded.login);
    assert.ok((await text("main")).includes("Fix the flaky login test"));
  });

  test("runs a function from a form built from its validator, and shows the server's error", async () => {
    await page.goto(url(`/functions/${encodeURIComponent("chatSessions:rename")}`), { waitUntil: "domcontentloaded" });
    await page.waitForSelector("#arg-sessionId", { timeout: WAIT_MS });
    await page.type("#arg-sessionId", "not-an-id");
    await page.type("#arg-title", "Renamed");
    await page.click("[data-action=run]");
    await page.waitForSelector("[data-outcome=error]", { timeout: WAIT_MS });
    const error = await text("[data-outcome=error]");
    assert.equal(await text("[data-outcome=error] .error-code"), "InvalidArgument", error);
    assert.match(error, /ArgumentValidationError.*not-an-id/s, error);
    await shot("functions-error");

    await page.$eval("#arg-sessionId", (input) => (input.value = ""));
    await page.evaluate(() => document.querySelector("#arg-sessionId").dispatchEvent(new Event("input", { bubbles: true })));
    await page.type("#arg-sessionId", seeded.alice);
    await page.click("[data-action=run]");
    await page.waitForSelector("[data-outcome=success]", { timeout: WAIT_MS });
    assert.equal((await client.query("chatSessions:get", { sessionId: seeded.alice })).title, "Renamed");

    await page.goto(url(`/functions/${encodeURIComponent("runs:getDashboard")}`), { waitUntil: "domcontentloaded" });
    await page.waitForSelector("[data-action=run]", { timeout: WAIT_MS });
    await page.click("[data-action=run]");
    await page.waitForSelector("[data-outcome=success]", { timeout: WAIT_MS });
    assert.ok((await text("[data-outcome=success]")).includes('"counts"'));
    await shot("functions");
  });

  test("lists the function calls live in the logs view", async () => {
    await page.goto(url("/logs"), { waitUntil: "domcontentloaded" });
    await page.waitForSelector('[data-log="teams.js:create"]', { timeout: WAIT_MS });
    await client.mutation("repos:create", { teamId: seeded.team, githubOwner: "acme", githubRepo: "mobile" });
    await page.waitForSelector('[data-log="repos.js:create"]', { timeout: WAIT_MS });
    await page.select("select[name=outcome]", "failure");
    await page.waitForSelector('[data-log="chatSessions.js:rename"]', { timeout: WAIT_MS });
    assert.equal(await page.$('[data-log="repos.js:create"]'), null, "successes are filtered out");
    await shot("logs");
  });

  test("says when it is disconnected, and goes on live after the server restarts", async () => {
    await page.goto(url("/runs"), { waitUntil: "domcontentloaded" });
    await page.waitForSelector("[data-connection=live]", { timeout: WAIT_MS });
    const restarted = server.restart({ downMs: 1500 });
    await page.waitForSelector("[data-connection=reconnecting]", { timeout: WAIT_MS });
    await shot("reconnecting");
    await restarted;
    await page.waitForSelector("[data-connection=live]", { timeout: 30_000 });
    // Still live: a run started after the restart shows up without a reload.
    await client.mutation("runs:start", { workOrderId: seeded.docs, temporalWorkflowId: `wo-${seeded.docs}`, repo: "acme/docs" });
    await waitForText("[data-counter=running] .counter-value", "2");
  });

  test("is readable on a phone-sized window", async () => {
    await page.setViewport({ width: 390, height: 844, isMobile: true });
    await page.goto(url("/runs"), { waitUntil: "domcontentloaded" });
    await page.waitForSelector("[data-counter=running]", { timeout: WAIT_MS });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the window`);
    await shot("runs-phone");
    await page.goto(url(`/runs/${seeded.done}`), { waitUntil: "domcontentloaded" });
    await page.waitForSelector("[data-step=checkout]", { timeout: WAIT_MS });
    await shot("run-detail-phone");
    await page.setViewport({ width: 1280, height: 800 });
  });
});

describe("the console in open development mode", () => {
  test("needs no sign-in", async () => {
    const server = await startServer();
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      await page.goto(`${server.url}/console/work-orders`, { waitUntil: "domcontentloaded" });
      await page.waitForSelector("[data-column=draft]", { timeout: WAIT_MS });
      assert.equal(await page.$("#admin-key"), null);
      assert.ok((await page.$eval(".whoami", (e) => e.textContent)).includes("open development mode"));
    } finally {
      await browser.close();
      await server.stop();
    }
  });
});
