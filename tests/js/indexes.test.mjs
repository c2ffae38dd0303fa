// Issue 10's two reproductions, with the npm client against the binary as
// built: a list must return each document once, under the key it has now.
// Each runs JANGAR_REPRO_RUNS times (default 100; at the old defect's rate of
// about one wrong result in ten runs, 100 runs miss it with probability 3e-5).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ConvexHttpClient } from "convex/browser";
import { anyApi as api } from "convex/server";

import { startServer } from "./server.mjs";

const RUNS = Number(process.env.JANGAR_REPRO_RUNS ?? 100);

// Every order listed under `status`, page by page.
async function listByStatus(client, status) {
  const listed = [];
  let cursor = null;
  for (;;) {
    const page = await client.query(api.workOrders.listByStatus, { status, paginationOpts: { numItems: 500, cursor } });
    listed.push(...page.page);
    if (page.isDone) return listed;
    cursor = page.continueCursor;
  }
}

describe("index entries follow their documents", () => {
  let server;
  let client;
  let teamId;
  before(async () => {
    server = await startServer();
    client = new ConvexHttpClient(server.url);
    teamId = await client.mutation(api.teams.create, { name: "indexes" });
  });
  after(async () => {
    await server?.stop();
  });

  test(`sessions:listByRepo lists each session once after a message (${RUNS} runs)`, async () => {
    const wrong = [];
    for (let run = 0; run < RUNS; run += 1) {
      const repoId = await client.mutation(api.repos.create, { teamId, githubOwner: "o", githubRepo: `r${run}` });
      const first = await client.mutation(api.sessions.create, { userId: "u", repoId, title: "first" });
      const second = await client.mutation(api.sessions.create, { userId: "u", repoId, title: "second" });
      await client.mutation(api.messages.send, { sessionId: first, role: "user", content: "hello" });
      const listed = (await client.query(api.sessions.listByRepo, { repoId })).map((s) => s._id);
      if (listed.length !== 2 || !listed.includes(first) || !listed.includes(second)) {
        wrong.push({ run, listed, first, second });
      }
    }
    assert.deepEqual(wrong, [], `${wrong.length} of ${RUNS} runs listed the sessions wrongly`);
  });

  test(`workOrders:listByStatus lists an order only under its status (${RUNS} orders)`, async () => {
    const sessionId = await client.mutation(api.sessions.create, { userId: "u", title: "orders" });
    const orders = [];
    for (let n = 0; n < RUNS; n += 1) {
      const workOrderId = await client.mutation(api.workOrders.create, { sessionId, title: `o${n}`, status: "submitted" });
      for (const status of ["accepted", "running", "succeeded"]) {
        await client.mutation(api.workOrders.updateStatus, { workOrderId, status });
      }
      orders.push(workOrderId);
    }
    for (const status of ["submitted", "accepted", "running"]) {
      const listed = await listByStatus(client, status);
      const stale = listed.filter((order) => order.status !== status).map((o) => `${o._id} (${o.status})`);
      assert.deepEqual(stale, [], `${stale.length} of ${RUNS} orders listed under ${status}`);
    }
    const succeeded = (await listByStatus(client, "succeeded")).map((o) => o._id);
    assert.deepEqual([...succeeded].sort(), [...orders].sort());
  });
});
