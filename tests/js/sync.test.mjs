// The WebSocket sync protocol with the real npm `convex` ConvexClient.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { ConvexClient, ConvexHttpClient } from "convex/browser";
import { anyApi } from "convex/server";
import { ConvexError } from "convex/values";
import { startServer } from "./server.mjs";
import { waitForValue as waitFor } from "./live.mjs";

const api = anyApi;

/**
 * A loopback TCP proxy in front of the server: `swallowReplies` drops what the
 * server sends, `dropAll()` cuts every connection, as a network failure would.
 */
async function startProxy(targetPort) {
  const pairs = new Set();
  const proxy = { swallowReplies: false, connections: 0 };
  const server = net.createServer((client) => {
    proxy.connections += 1;
    const upstream = net.connect(targetPort, "127.0.0.1");
    const pair = { client, upstream };
    pairs.add(pair);
    client.on("data", (chunk) => upstream.write(chunk));
    upstream.on("data", (chunk) => {
      if (!proxy.swallowReplies) client.write(chunk);
    });
    const close = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("close", close);
    upstream.on("close", close);
    client.on("error", close);
    upstream.on("error", close);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  proxy.url = `http://127.0.0.1:${server.address().port}`;
  proxy.dropAll = () => {
    for (const { client, upstream } of pairs) {
      client.destroy();
      upstream.destroy();
    }
  };
  proxy.close = () => new Promise((resolve) => {
    proxy.dropAll();
    server.close(resolve);
  });
  return proxy;
}

describe("Jangar sync protocol with ConvexClient", () => {
  let server;
  let http;
  const clients = [];
  const client = (url = server.url) => {
    const c = new ConvexClient(url);
    clients.push(c);
    return c;
  };

  before(async () => {
    server = await startServer();
    http = new ConvexHttpClient(server.url);
  });

  after(async () => {
    for (const c of clients) await c.close();
    await server?.stop();
  });

  test("a subscriber sees a message appended by another client", async () => {
    const watcher = client();
    const writer = client();
    const sessionId = await writer.mutation(api.chatSessions.create, { userId: "u", title: "live" });
    await waitFor(watcher, api.chatMessages.listBySession, { sessionId }, (m) => m.length === 0);
    const seen = waitFor(watcher, api.chatMessages.listBySession, { sessionId }, (m) => m.length === 1);
    await writer.mutation(api.chatMessages.append, { sessionId, role: "user", content: "hello" });
    const messages = await seen;
    assert.equal(messages[0].content, "hello");
    assert.equal(messages[0].sessionId, sessionId);
  });

  test("a mutation resolves only after the Transition that shows its write", async () => {
    const c = client();
    const sessionId = await c.mutation(api.chatSessions.create, { userId: "u", title: "order" });
    let latest = null;
    c.onUpdate(api.chatMessages.listBySession, { sessionId }, (m) => { latest = m; });
    await waitFor(c, api.chatMessages.listBySession, { sessionId }, (m) => m.length === 0);
    for (const content of ["a", "b", "c"]) {
      await c.mutation(api.chatMessages.append, { sessionId, role: "user", content });
      // By the time the promise resolves, the subscription already shows the write.
      assert.equal(latest.at(-1).content, content);
    }
  });

  test("application errors arrive as ConvexError with data", async () => {
    const c = client();
    const sessionId = await c.mutation(api.chatSessions.create, { userId: "u", title: "errors" });
    const order = await c.mutation(api.workOrders.create, { sessionId, status: "draft" });
    await assert.rejects(
      c.mutation(api.workOrders.updateStatus, { workOrderId: order, status: "running" }),
      (e) => e instanceof ConvexError && e.data.code === "InvalidTransition" && e.data.from === "draft",
    );
    // A subscription whose arguments fail validation gets QueryFailed with the error's data.
    const failure = await new Promise((resolve) => {
      const unsubscribe = c.onUpdate(api.chatSessions.get, { sessionId: "not-an-id" }, () => {}, (e) => {
        unsubscribe();
        resolve(e);
      });
    });
    assert.ok(failure instanceof ConvexError, String(failure));
    assert.equal(failure.data.code, "InvalidArgument");
    assert.match(failure.message, /sessionId/);
  });

  test("after the server drops the socket, subscriptions come back and an in-flight mutation applies once", async () => {
    const proxy = await startProxy(server.port);
    try {
      const c = client(proxy.url);
      const sessionId = await http.mutation(api.chatSessions.create, { userId: "u", title: "reconnect" });
      const updates = [];
      c.onUpdate(api.chatMessages.listBySession, { sessionId }, (m) => updates.push(m.map((x) => x.content)));
      await waitFor(c, api.chatMessages.listBySession, { sessionId }, (m) => m.length === 0);

      // The mutation reaches the server and commits, but its response is lost with the socket.
      proxy.swallowReplies = true;
      const inFlight = c.mutation(api.chatMessages.append, { sessionId, role: "user", content: "once" });
      const deadline = Date.now() + 5_000;
      while ((await http.query(api.chatMessages.listBySession, { sessionId })).length === 0) {
        assert.ok(Date.now() < deadline, "the mutation never reached the server");
        await new Promise((r) => setTimeout(r, 20));
      }
      const connectionsBefore = proxy.connections;
      proxy.dropAll();
      proxy.swallowReplies = false;

      // The client reconnects, re-subscribes and replays the mutation; the server answers from its record.
      const id = await inFlight;
      assert.ok(proxy.connections > connectionsBefore, "the client reconnected");
      const stored = await http.query(api.chatMessages.listBySession, { sessionId });
      assert.deepEqual(stored.map((m) => m.content), ["once"], "applied exactly once");
      assert.equal(stored[0]._id, id, "the replay answers with the first run's result");

      // The restored subscription keeps receiving updates.
      const next = waitFor(c, api.chatMessages.listBySession, { sessionId }, (m) => m.length === 2);
      await http.mutation(api.chatMessages.append, { sessionId, role: "assistant", content: "after" });
      assert.deepEqual((await next).map((m) => m.content), ["once", "after"]);
    } finally {
      await proxy.close();
    }
  });

  test("a subscribed page keeps every row it grew to across a reconnect (the journal)", async () => {
    const proxy = await startProxy(server.port);
    try {
      const c = client(proxy.url);
      const sessionId = await http.mutation(api.chatSessions.create, { userId: "u", title: "journal" });
      for (let i = 0; i < 10; i += 1) {
        await http.mutation(api.chatMessages.append, { sessionId, role: "user", content: `m${i}` });
      }
      // The whole session fits the first page, so the page is pinned to the end of the range and grows.
      const args = { sessionId, paginationOpts: { numItems: 10, cursor: null } };
      const pages = [];
      c.onUpdate(api.chatMessages.listBySession, args, (page) => pages.push(page));
      await waitFor(c, api.chatMessages.listBySession, args, (p) => p.page.length === 10 && p.isDone);
      for (let i = 10; i < 22; i += 1) {
        await http.mutation(api.chatMessages.append, { sessionId, role: "user", content: `m${i}` });
      }
      await waitFor(c, api.chatMessages.listBySession, args, (p) => p.page.length === 22);

      const seenBefore = pages.length;
      proxy.dropAll();
      const deadline = Date.now() + 10_000;
      while (c.connectionState().connectionCount < 2 || c.connectionState().hasInflightRequests) {
        assert.ok(Date.now() < deadline, "the client never reconnected");
        await new Promise((r) => setTimeout(r, 20));
      }
      // Re-subscribed with its journal, the page still ends where it did: one more message grows it to 23.
      await http.mutation(api.chatMessages.append, { sessionId, role: "user", content: "m22" });
      const grown = await waitFor(c, api.chatMessages.listBySession, args, (p) => p.page.length === 23);
      assert.equal(grown.isDone, true);
      const shrunk = pages.slice(seenBefore).filter((p) => p.page.length < 22).map((p) => p.page.length);
      assert.deepEqual(shrunk, [], "after the reconnect the page never lost rows");
    } finally {
      await proxy.close();
    }
  });
});
