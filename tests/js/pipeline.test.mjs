// One socket with many mutations in flight (issue 11, item 1): the npm
// ConvexClient sends them all at once; every one must complete exactly once, in
// the order sent, without the server dropping the connection.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ConvexClient, ConvexHttpClient } from "convex/browser";
import { anyApi as api } from "convex/server";

import { startServer } from "./server.mjs";

const IN_FLIGHT = 10_000;

// Every message of a session, oldest first.
async function allMessages(http, sessionId) {
  const messages = [];
  let cursor = null;
  for (;;) {
    const page = await http.query(api.chatMessages.listBySession, {
      sessionId,
      paginationOpts: { numItems: 1000, cursor },
    });
    messages.push(...page.page);
    if (page.isDone) return messages;
    cursor = page.continueCursor;
  }
}

describe("mutations pipelined on one socket", () => {
  let server;
  let live;
  before(async () => {
    server = await startServer({ extraArgs: ["--rate-limit-per-second", "0"] });
  });
  after(async () => {
    await live?.close();
    await server?.stop();
  });

  test(`${IN_FLIGHT} mutations in flight complete once each, in order, on one connection`, { timeout: 180_000 }, async () => {
    const http = new ConvexHttpClient(server.url);
    const sessionId = await http.mutation(api.chatSessions.create, { userId: "u", title: "pipelined" });
    live = new ConvexClient(server.url);
    const ids = await Promise.all(
      Array.from({ length: IN_FLIGHT }, (_, i) =>
        live.mutation(api.chatMessages.append, { sessionId, role: "user", content: String(i) }),
      ),
    );
    assert.equal(new Set(ids).size, IN_FLIGHT, "one distinct message per mutation");
    const state = live.connectionState();
    assert.equal(state.connectionCount, 1, `the socket was never dropped: ${JSON.stringify(state)}`);
    const contents = (await allMessages(http, sessionId)).map((m) => m.content);
    assert.equal(contents.length, IN_FLIGHT, "each mutation applied exactly once");
    const outOfOrder = contents.findIndex((content, i) => content !== String(i));
    assert.equal(outOfOrder, -1, `applied in the order sent (first difference at ${outOfOrder})`);
  });
});
