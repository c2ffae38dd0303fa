// ConvexHttpClient.consistentQuery: /api/query_ts, then /api/query_at_ts with that
// timestamp (issue 11, item 7). Every query of one client reads as of the same
// timestamp; a query whose data changed since is refused, not answered with
// newer data.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ConvexHttpClient } from "convex/browser";
import { anyApi as api } from "convex/server";

import { startServer } from "./server.mjs";

describe("queries as of one timestamp", () => {
  let server;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.stop();
  });

  test("consistentQuery reads the state at its timestamp, or says it cannot", async () => {
    const writer = new ConvexHttpClient(server.url);
    const read = await writer.mutation(api.chatSessions.create, { userId: "u", title: "read" });
    const other = await writer.mutation(api.chatSessions.create, { userId: "u", title: "other" });
    await writer.mutation(api.chatMessages.append, { sessionId: read, role: "user", content: "before" });

    const reader = new ConvexHttpClient(server.url);
    const first = await reader.consistentQuery(api.chatMessages.listBySession, { sessionId: read });
    assert.deepEqual(first.map((m) => m.content), ["before"]);

    // A write elsewhere leaves the query's data as it was at the timestamp: still answered.
    await writer.mutation(api.chatMessages.append, { sessionId: other, role: "user", content: "elsewhere" });
    const again = await reader.consistentQuery(api.chatMessages.listBySession, { sessionId: read });
    assert.deepEqual(again, first);
    const session = await reader.consistentQuery(api.chatSessions.get, { sessionId: read });
    assert.equal(session.title, "read");

    // A write to what it reads: the state at the timestamp is gone, and the query says so.
    await writer.mutation(api.chatMessages.append, { sessionId: read, role: "user", content: "after" });
    await assert.rejects(
      reader.consistentQuery(api.chatMessages.listBySession, { sessionId: read }),
      (e) => e.message.includes("TimestampTooOld"),
    );
    // A fresh client takes a fresh timestamp and sees the new message.
    const fresh = await new ConvexHttpClient(server.url).consistentQuery(api.chatMessages.listBySession, {
      sessionId: read,
    });
    assert.deepEqual(fresh.map((m) => m.content), ["before", "after"]);
  });

  test("a timestamp that is not one answers in the API's error shape", async () => {
    for (const ts of ["garbage", "/////////w=="]) {
      const res = await fetch(`${server.url}/api/query_at_ts`, {
        method: "POST",
        body: JSON.stringify({ path: "chatSessions:list", args: { userId: "u" }, ts }),
      });
      assert.equal(res.status, 400);
      assert.equal((await res.json()).code, "BadTimestamp", ts);
    }
  });
});
