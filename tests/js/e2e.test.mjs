// End-to-end test: the official npm `convex` client (ConvexHttpClient) and the
// raw fetch pattern of seed 004 against a real Jangar server.
//
// Run with `npm test` in tests/js after building the server (cargo build), or
// point JANGAR_BIN at a jangar binary. See server.mjs.
//
// The tests share one server and run in order: each step builds on the data
// the earlier ones wrote (one session, its messages, one work order).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ConvexHttpClient } from "convex/browser";
import { anyApi } from "convex/server";
import { ConvexError } from "convex/values";

import { startServer } from "./server.mjs";

const api = anyApi;

// ---------------------------------------------------------------------------
// Document ids (shared/spec/convex-wire.md §3):
//   bytes = VInt(table number) ++ 16-byte internal id ++ 2-byte footer,
//   footer = fletcher16(previous bytes) XOR version 0, little-endian,
//   text  = lowercase Crockford base32, unpadded, 31-37 characters.

const ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";
const ID_PATTERN = /^[0-9a-hjkmnp-tv-z]{31,37}$/;
const MS_PER_DAY = 86_400_000;

function base32Decode(text) {
  const bytes = [];
  let buffer = 0;
  let bits = 0;
  for (const ch of text) {
    const value = ID_ALPHABET.indexOf(ch);
    if (value < 0) throw new Error(`invalid base32 character ${JSON.stringify(ch)}`);
    buffer = ((buffer << 5) | value) & 0xfff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      bytes.push((buffer >> bits) & 0xff);
    }
  }
  return Uint8Array.from(bytes);
}

function base32Encode(bytes) {
  let text = "";
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = ((buffer << 8) | byte) & 0xfff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      text += ID_ALPHABET[(buffer >> bits) & 31];
    }
  }
  if (bits > 0) text += ID_ALPHABET[(buffer << (5 - bits)) & 31];
  return text;
}

// Fletcher-16 with modulus 256: (sum of sums) << 8 | (sum).
function fletcher16(bytes) {
  let sum = 0;
  let sumOfSums = 0;
  for (const byte of bytes) {
    sum = (sum + byte) & 0xff;
    sumOfSums = (sumOfSums + sum) & 0xff;
  }
  return (sumOfSums << 8) | sum;
}

// Decodes a document id, throwing if it is not well formed. Returns
// {tableNumber, internalId}.
function decodeId(id) {
  if (typeof id !== "string" || !ID_PATTERN.test(id)) {
    throw new Error(`not a document id: ${JSON.stringify(id)}`);
  }
  const bytes = base32Decode(id);
  if (base32Encode(bytes) !== id) {
    throw new Error(`id ${id} does not round-trip through base32`);
  }
  let tableNumber = 0;
  let pos = 0;
  for (;;) {
    if (pos >= 5 || pos >= bytes.length) throw new Error(`id ${id}: bad table number`);
    const byte = bytes[pos];
    tableNumber += (byte & 0x7f) * 2 ** (7 * pos);
    pos += 1;
    if (byte < 0x80) break;
  }
  if (tableNumber === 0) throw new Error(`id ${id}: table number 0`);
  if (bytes.length !== pos + 16 + 2) {
    throw new Error(`id ${id}: ${bytes.length} bytes, expected ${pos + 18}`);
  }
  const internalId = bytes.subarray(pos, pos + 16);
  const footer = bytes[pos + 16] | (bytes[pos + 17] << 8);
  const expected = fletcher16(bytes.subarray(0, pos + 16)) ^ 0;
  if (footer !== expected) {
    throw new Error(`id ${id}: footer ${footer} does not match checksum ${expected}`);
  }
  return { tableNumber, internalId };
}

// Asserts that `id` is a document id minted today and returns its table number.
function assertId(id, what) {
  assert.equal(typeof id, "string", `${what}: id should be a string, got ${JSON.stringify(id)}`);
  let decoded;
  assert.doesNotThrow(() => {
    decoded = decodeId(id);
  }, `${what}: ${JSON.stringify(id)} should be a Convex document id`);
  // The last two bytes of the internal id are the days since the epoch (big-endian).
  const days = (decoded.internalId[14] << 8) | decoded.internalId[15];
  const today = Math.floor(Date.now() / MS_PER_DAY);
  assert.ok(
    Math.abs(days - today) <= 1,
    `${what}: id ${id} carries day ${days}, expected about ${today} (days since the epoch)`,
  );
  return decoded.tableNumber;
}

// A server-set timestamp: ms since the epoch, close to now.
function assertTimestamp(value, what) {
  assert.equal(typeof value, "number", `${what} should be a number, got ${JSON.stringify(value)}`);
  assert.ok(Number.isFinite(value), `${what} should be finite`);
  assert.ok(
    Math.abs(value - Date.now()) < 5 * 60_000,
    `${what} = ${value} should be ms since the epoch close to now (${Date.now()})`,
  );
}

function assertSystemFields(doc, what) {
  assert.equal(typeof doc, "object", `${what} should be a document`);
  assert.notEqual(doc, null, `${what} should be a document, got null`);
  assertId(doc._id, `${what}._id`);
  assertTimestamp(doc._creationTime, `${what}._creationTime`);
}

function assertActive(doc, what) {
  assert.ok(
    doc.deletedAt === undefined || doc.deletedAt === null,
    `${what} should not be soft-deleted, has deletedAt ${JSON.stringify(doc.deletedAt)}`,
  );
}

// Checks a rejection: `check(err)` asserts details; returning true tells
// assert.rejects the error was the expected one.
function rejectsWith(check) {
  return (err) => {
    check(err);
    return true;
  };
}

// Seed 004's backend call: a plain fetch, JSON body, no Content-Type header.
async function rawMutation(url, body) {
  const res = await fetch(`${url}/api/mutation`, { method: "POST", body });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    assert.fail(`POST /api/mutation answered ${res.status} with a body that is not JSON: ${text}`);
  }
  return { status: res.status, json };
}

// ---------------------------------------------------------------------------

test("0. the id decoder of this test agrees with Convex's reference id", () => {
  // Table 1017, internal id [251, 251^2, 251^3, ...] mod 256: the stability
  // vector of Convex's id_v6.rs.
  const { tableNumber, internalId } = decodeId("z43zp6c3e75gkmz1kfwj6mbbx5sw281h");
  assert.equal(tableNumber, 1017);
  const expected = [251];
  for (let i = 1; i < 16; i++) expected.push((expected[i - 1] * 251) & 0xff);
  assert.deepEqual([...internalId], expected);
  assert.throws(() => decodeId("z43zp6c3e75gkmz1kfwj6mbbx5sw281j"), /footer/);
  assert.throws(() => decodeId("nope"), /not a document id/);
});

describe("Jangar with the npm convex client", () => {
  let server;
  let client;

  // State shared by the steps, in order.
  let sessionId;
  let sessionTable;
  let session;
  let messageIds = [];
  let messageTable;
  let workOrderId;

  const contents = [
    { role: "user", content: "Hello, can you fix the login bug?" },
    { role: "assistant", content: "Sure. Looking at the auth module now." },
    { role: "user", content: "Thanks!" },
  ];

  before(async () => {
    server = await startServer();
    client = new ConvexHttpClient(server.url);
  });

  after(async () => {
    if (server !== undefined) await server.stop();
  });

  function need(value, what) {
    assert.ok(value !== undefined, `${what} is missing: an earlier step failed`);
    return value;
  }

  const listMessages = (args = {}) =>
    client.query(api.chatMessages.listBySession, { sessionId: need(sessionId, "sessionId"), ...args });

  test("1. chatSessions:create returns an id; chatSessions:get returns the session", async () => {
    sessionId = await client.mutation(api.chatSessions.create, { userId: "u1", title: "First" });
    sessionTable = assertId(sessionId, "chatSessions:create");

    session = await client.query(api.chatSessions.get, { sessionId });
    assertSystemFields(session, "session");
    assert.equal(session._id, sessionId);
    assert.equal(session.userId, "u1");
    assert.equal(session.title, "First");
    assertTimestamp(session.createdAt, "session.createdAt");
    assertTimestamp(session.updatedAt, "session.updatedAt");
    assertTimestamp(session.lastMessageAt, "session.lastMessageAt");
    assertTimestamp(session.lastActiveAt, "session.lastActiveAt");
    assertActive(session, "session");
  });

  test("2. chatMessages:append x3, then listBySession returns them oldest first", async () => {
    need(sessionId, "sessionId");
    for (const [i, { role, content }] of contents.entries()) {
      const id = await client.mutation(api.chatMessages.append, { sessionId, role, content });
      const table = assertId(id, `chatMessages:append #${i + 1}`);
      if (messageTable === undefined) messageTable = table;
      assert.equal(table, messageTable, "all messages should be in one table");
      messageIds.push(id);
    }
    assert.notEqual(messageTable, sessionTable, "messages and sessions are different tables");
    assert.equal(new Set(messageIds).size, 3, "message ids should be distinct");

    const messages = await listMessages();
    assert.ok(Array.isArray(messages), "listBySession without paginationOpts returns an array");
    assert.equal(messages.length, 3);
    assert.deepEqual(
      messages.map((m) => m._id),
      messageIds,
      "exactly the three messages, oldest first",
    );
    assert.deepEqual(
      messages.map((m) => ({ role: m.role, content: m.content })),
      contents,
    );
    for (const [i, m] of messages.entries()) {
      assertSystemFields(m, `message #${i + 1}`);
      assert.equal(m.sessionId, sessionId);
      assertTimestamp(m.createdAt, `message #${i + 1}.createdAt`);
      assertActive(m, `message #${i + 1}`);
      if (i > 0) {
        assert.ok(m.createdAt >= messages[i - 1].createdAt, "createdAt is non-decreasing");
        assert.ok(m._creationTime >= messages[i - 1]._creationTime, "_creationTime is non-decreasing");
      }
    }

    const updated = await client.query(api.chatSessions.get, { sessionId });
    assertSystemFields(updated, "session");
    assert.equal(updated._id, sessionId);
    assertTimestamp(updated.lastMessageAt, "session.lastMessageAt");
    assert.ok(
      updated.lastMessageAt >= session.createdAt,
      `lastMessageAt ${updated.lastMessageAt} >= createdAt ${session.createdAt}`,
    );
    assert.ok(
      updated.lastMessageAt >= messages[2].createdAt,
      `lastMessageAt ${updated.lastMessageAt} >= the last message's createdAt ${messages[2].createdAt}`,
    );
  });

  test("3. a work order goes submitted -> accepted -> running -> succeeded and gets its result", async () => {
    need(sessionId, "sessionId");
    const workflowArgs = { repo: "a/b", n: 1 };
    workOrderId = await client.mutation(api.workOrders.create, {
      sessionId,
      title: "Fix bug",
      prompt: "Fix the login bug in the auth module.",
      workflowType: "codex",
      workflowArgs,
    });
    const workOrderTable = assertId(workOrderId, "workOrders:create");
    assert.notEqual(workOrderTable, sessionTable);
    assert.notEqual(workOrderTable, messageTable);

    const created = await client.query(api.workOrders.get, { workOrderId });
    assertSystemFields(created, "work order");
    assert.equal(created._id, workOrderId);
    assert.equal(created.status, "submitted");
    assert.equal(created.sessionId, sessionId);
    assertTimestamp(created.createdAt, "workOrder.createdAt");

    for (const status of ["accepted", "running", "succeeded"]) {
      const doc = await client.mutation(api.workOrders.updateStatus, { workOrderId, status });
      assertSystemFields(doc, `updateStatus(${status}) result`);
      assert.equal(doc._id, workOrderId, "updateStatus returns the updated document");
      assert.equal(doc.status, status);
    }

    const prUrl = "https://github.com/a/b/pull/1";
    const commitSha = "abc123";
    const afterResult = await client.mutation(api.workOrders.updateResult, {
      workOrderId,
      prUrl,
      commitSha,
    });
    assertSystemFields(afterResult, "updateResult result");
    assert.equal(afterResult._id, workOrderId, "updateResult returns the updated document");
    assert.equal(afterResult.prUrl, prUrl);
    assert.equal(afterResult.commitSha, commitSha);

    const doc = await client.query(api.workOrders.get, { workOrderId });
    assertSystemFields(doc, "work order");
    assert.equal(doc._id, workOrderId);
    assert.equal(doc.sessionId, sessionId);
    assert.equal(doc.status, "succeeded");
    assert.equal(doc.title, "Fix bug");
    assert.equal(doc.prompt, "Fix the login bug in the auth module.");
    assert.equal(doc.workflowType, "codex");
    assert.deepEqual(doc.workflowArgs, workflowArgs);
    assert.equal(doc.prUrl, prUrl);
    assert.equal(doc.commitSha, commitSha);
    assert.equal(doc.createdAt, created.createdAt, "createdAt does not change");
    assertTimestamp(doc.updatedAt, "workOrder.updatedAt");
    assert.ok(doc.updatedAt >= doc.createdAt, "updatedAt >= createdAt");
    assertActive(doc, "work order");

    const orders = await client.query(api.workOrders.listBySession, { sessionId });
    assert.ok(Array.isArray(orders), "listBySession without paginationOpts returns an array");
    assert.deepEqual(
      orders.map((o) => o._id),
      [workOrderId],
      "the session's only work order is listed",
    );
    assert.equal(orders[0].status, "succeeded");
  });

  test("4. an illegal transition (succeeded -> running) is a ConvexError InvalidTransition", async () => {
    need(workOrderId, "workOrderId");
    await assert.rejects(
      client.mutation(api.workOrders.updateStatus, { workOrderId, status: "running" }),
      rejectsWith((err) => {
        assert.ok(err instanceof ConvexError, `expected a ConvexError, got ${err?.name}: ${err?.message}`);
        assert.ok(
          typeof err.data === "object" && err.data !== null,
          `ConvexError.data should be the errorData object, got ${JSON.stringify(err.data)}`,
        );
        assert.equal(err.data.code, "InvalidTransition");
        assert.equal(err.data.from, "succeeded");
        assert.equal(err.data.to, "running");
        assert.ok(
          err.data.message === undefined || typeof err.data.message === "string",
          "data.message, when present, is a string",
        );
      }),
    );

    // Nothing changed, and setting the current status again is a no-op.
    const same = await client.mutation(api.workOrders.updateStatus, {
      workOrderId,
      status: "succeeded",
    });
    assert.equal(same._id, workOrderId);
    assert.equal(same.status, "succeeded");
    const doc = await client.query(api.workOrders.get, { workOrderId });
    assert.equal(doc.status, "succeeded");
  });

  test("5. chatMessages:remove soft-deletes; includeDeleted shows it; restore brings it back", async () => {
    need(sessionId, "sessionId");
    const removedId = need(messageIds[1], "the second message");

    assert.equal(await client.mutation(api.chatMessages.remove, { messageId: removedId }), null);

    const active = await listMessages();
    assert.deepEqual(
      active.map((m) => m._id),
      [messageIds[0], messageIds[2]],
      "the removed message is hidden, 2 left",
    );

    const all = await listMessages({ includeDeleted: true });
    assert.deepEqual(all.map((m) => m._id), messageIds, "includeDeleted lists all three, oldest first");
    const removed = all[1];
    assert.equal(removed.content, contents[1].content);
    assertTimestamp(removed.deletedAt, "removed message deletedAt");
    assertActive(all[0], "message #1");
    assertActive(all[2], "message #3");

    assert.equal(await client.mutation(api.chatMessages.restore, { messageId: removedId }), null);
    const restored = await listMessages();
    assert.deepEqual(restored.map((m) => m._id), messageIds, "all three are back");
    assertActive(restored[1], "restored message");
    assert.equal(restored[1].content, contents[1].content);
  });

  test("6. argument validation: malformed id, wrong table, missing field, unknown field", async () => {
    need(sessionId, "sessionId");
    need(workOrderId, "workOrderId");

    const rejectsMatching = (pattern) =>
      rejectsWith((err) => {
        assert.ok(err instanceof Error, `expected an Error, got ${err}`);
        assert.match(err.message, pattern);
      });

    await assert.rejects(
      client.mutation(api.chatMessages.append, { sessionId: "nope", role: "user", content: "x" }),
      rejectsMatching(/sessionId/),
      "a malformed sessionId is rejected",
    );
    await assert.rejects(
      client.mutation(api.chatMessages.append, { sessionId, role: "user" }),
      rejectsMatching(/content/),
      "a missing content is rejected",
    );
    await assert.rejects(
      client.mutation(api.chatMessages.append, {
        sessionId: workOrderId,
        role: "user",
        content: "x",
      }),
      rejectsMatching(/sessionId|chat_sessions/),
      "an id of another table is rejected",
    );
    await assert.rejects(
      client.mutation(api.chatMessages.append, { sessionId, role: "user", content: "x", bogus: 1 }),
      rejectsMatching(/bogus/),
      "an unknown argument is rejected",
    );

    const messages = await listMessages({ includeDeleted: true });
    assert.deepEqual(messages.map((m) => m._id), messageIds, "no rejected call wrote anything");
  });

  test("7. an unknown function is rejected", async () => {
    await assert.rejects(client.query(api.nope.missing, {}), Error);
    await assert.rejects(client.mutation(api.nope.missing, {}), Error);
  });

  test("8. seed 004's raw fetch to /api/mutation (no Content-Type) appends a message", async () => {
    need(sessionId, "sessionId");
    const { status, json } = await rawMutation(
      server.url,
      JSON.stringify({
        path: "chatMessages:append",
        args: { sessionId, role: "assistant", content: "from backend" },
      }),
    );
    assert.equal(status, 200, `HTTP status, body ${JSON.stringify(json)}`);
    assert.equal(json.status, "success", `body ${JSON.stringify(json)}`);
    const table = assertId(json.value, "raw chatMessages:append");
    assert.equal(table, messageTable);
    assert.ok(Array.isArray(json.logLines), "a UdfResponse carries logLines: []");

    const messages = await listMessages();
    assert.deepEqual(messages.map((m) => m._id), [...messageIds, json.value]);
    const last = messages[3];
    assert.equal(last.role, "assistant");
    assert.equal(last.content, "from backend");
    assert.equal(last.sessionId, sessionId);
    assertTimestamp(last.createdAt, "raw message createdAt");
  });

  test("9. a malformed body is HTTP 400 with {code, message}", async () => {
    const { status, json } = await rawMutation(server.url, "{not json");
    assert.equal(status, 400, `HTTP status, body ${JSON.stringify(json)}`);
    assert.equal(typeof json.code, "string", `body ${JSON.stringify(json)}`);
    assert.ok(json.code.length > 0, "code is not empty");
    assert.equal(typeof json.message, "string", `body ${JSON.stringify(json)}`);
    assert.ok(json.message.length > 0, "message is not empty");
  });
});
