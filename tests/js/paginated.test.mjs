// React's usePaginatedQuery (from the npm `convex` package, rendered with
// react-test-renderer) over chatMessages:listBySession with `order: "desc"`: a
// chat view opens on the newest messages and pages back in time, with no gap
// and no duplicate, while new messages arrive on top (issue 11, item 3).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ConvexHttpClient } from "convex/browser";
import { ConvexProvider, ConvexReactClient, usePaginatedQuery } from "convex/react";
import { anyApi as api } from "convex/server";
import React from "react";
import TestRenderer, { act } from "react-test-renderer";
import WebSocket from "ws";

import { startServer } from "./server.mjs";

globalThis.IS_REACT_ACT_ENVIRONMENT = true;

const h = React.createElement;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Renders usePaginatedQuery and keeps its latest state in `view.state`.
function renderChat(client, sessionId) {
  const view = { state: null };
  function Chat() {
    view.state = usePaginatedQuery(api.chatMessages.listBySession, { sessionId, order: "desc" }, { initialNumItems: 10 });
    return null;
  }
  act(() => {
    view.renderer = TestRenderer.create(h(ConvexProvider, { client }, h(Chat)));
  });
  return view;
}

// Lets the client and React run until `ok(state)` holds.
async function until(view, ok, what) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    await act(async () => {
      await sleep(20);
    });
    if (view.state !== null && ok(view.state)) return view.state;
    const now = view.state && { status: view.state.status, results: view.state.results.map((m) => m.content) };
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}; state ${JSON.stringify(now)}`);
  }
}

const contents = (state) => state.results.map((m) => m.content);

describe("usePaginatedQuery, newest first", () => {
  let server;
  let client;
  before(async () => {
    server = await startServer();
    // Node 20 has no global WebSocket; a browser would need no option.
    client = new ConvexReactClient(server.url, { webSocketConstructor: WebSocket });
  });
  after(async () => {
    await client?.close();
    await server?.stop();
  });

  test("pages back in time without gaps or duplicates while new messages arrive", async () => {
    const http = new ConvexHttpClient(server.url);
    const sessionId = await http.mutation(api.chatSessions.create, { userId: "u", title: "newest first" });
    const send = (content) => http.mutation(api.chatMessages.append, { sessionId, role: "user", content });
    for (let i = 0; i < 35; i += 1) await send(`m${i}`);

    const view = renderChat(client, sessionId);
    let state = await until(view, (s) => s.status === "CanLoadMore", "the first page");
    assert.deepEqual(contents(state), Array.from({ length: 10 }, (_, i) => `m${34 - i}`), "opens on the newest ten");

    // New messages land on top of the first page, which grows instead of pushing rows to the next.
    await send("m35");
    await send("m36");
    state = await until(view, (s) => s.results.length === 12, "the new messages");
    assert.deepEqual(contents(state).slice(0, 3), ["m36", "m35", "m34"]);

    while (state.status !== "Exhausted") {
      const loaded = state.results.length;
      act(() => state.loadMore(10));
      state = await until(view, (s) => s.status !== "LoadingMore" && s.results.length > loaded, "the next page");
      if (loaded === 22) await send("m37"); // one more arrives mid-way through the history
    }
    state = await until(view, (s) => s.results.length === 38, "every message");
    const expected = Array.from({ length: 38 }, (_, i) => `m${37 - i}`);
    assert.deepEqual(contents(state), expected, "every message once, newest first");
    act(() => view.renderer.unmount());
  });
});
