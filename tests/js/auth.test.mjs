// User tokens with the real npm `convex` clients: a UI signed in through an
// identity provider (the test plays the provider, with a key it makes), and a
// worker with an admin key.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync, sign } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { ConvexClient, ConvexHttpClient } from "convex/browser";
import { anyApi } from "convex/server";
import { ConvexError } from "convex/values";
import { startServer } from "./server.mjs";
import { waitForValue as waitFor } from "./live.mjs";

const api = anyApi;
const ISSUER = "https://idp.jangar.test";
const AUDIENCE = "jangar-ui";
const ADMIN_KEY = "js-auth-test-admin-key";

const base64url = (data) => Buffer.from(data).toString("base64url");

/** An identity provider: an RSA key made here, and tokens signed with it. */
function makeProvider() {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const jwk = { ...publicKey.export({ format: "jwk" }), kid: "js-1", alg: "RS256", use: "sig" };
  const token = (subject, seconds) => {
    const now = Math.floor(Date.now() / 1000);
    const header = base64url(JSON.stringify({ alg: "RS256", typ: "JWT", kid: "js-1" }));
    const claims = { iss: ISSUER, aud: AUDIENCE, sub: subject, iat: now, exp: now + seconds, name: subject };
    const body = `${header}.${base64url(JSON.stringify(claims))}`;
    return `${body}.${base64url(sign("sha256", Buffer.from(body), privateKey))}`;
  };
  return { jwks: { keys: [jwk] }, token };
}

describe("user tokens and admin keys with the npm clients", () => {
  const provider = makeProvider();
  let server;
  let configDir;
  let worker;

  before(async () => {
    configDir = await mkdtemp(path.join(tmpdir(), "jangar-auth-"));
    const config = path.join(configDir, "auth.json");
    const providers = [{ type: "customJwt", issuer: ISSUER, applicationID: AUDIENCE, algorithm: "RS256", jwks: provider.jwks }];
    await writeFile(config, JSON.stringify({ providers, clockSkewSeconds: 0 }));
    server = await startServer({ env: { JANGAR_ADMIN_KEY: ADMIN_KEY }, extraArgs: ["--auth-config", config] });
    worker = new ConvexHttpClient(server.url);
    worker.setAdminAuth(ADMIN_KEY);
  });

  after(async () => {
    await server?.stop();
    await rm(configDir, { recursive: true, force: true });
  });

  test("without credentials the deployment answers 401", async () => {
    await assert.rejects(new ConvexHttpClient(server.url).query(api.chatSessions.list, { userId: "alice" }), /401|Unauthenticated/);
  });

  test("a signed-in user works with their own sessions and cannot see another's", async () => {
    const alice = new ConvexHttpClient(server.url);
    alice.setAuth(provider.token("alice", 600));
    const mine = await alice.mutation(api.chatSessions.create, { userId: "alice", title: "mine" });
    await alice.mutation(api.chatMessages.append, { sessionId: mine, role: "user", content: "hello" });
    assert.equal((await alice.query(api.chatMessages.listBySession, { sessionId: mine })).length, 1);

    const bob = new ConvexHttpClient(server.url);
    bob.setAuth(provider.token("bob", 600));
    assert.equal(await bob.query(api.chatSessions.get, { sessionId: mine }), null);
    await assert.rejects(
      bob.mutation(api.chatMessages.append, { sessionId: mine, role: "user", content: "hi" }),
      (e) => e instanceof ConvexError && e.data.code === "NotFound",
    );
    await assert.rejects(
      bob.mutation(api.chatSessions.create, { userId: "alice", title: "as alice" }),
      (e) => e instanceof ConvexError && e.data.code === "Forbidden",
    );
    // Worker functions need the admin key.
    const order = await alice.mutation(api.workOrders.create, { sessionId: mine, title: "fix" });
    await assert.rejects(
      alice.mutation(api.runs.start, { workOrderId: order, temporalWorkflowId: "wf" }),
      (e) => e instanceof ConvexError && e.data.code === "Forbidden",
    );
    const run = await worker.mutation(api.runs.start, { workOrderId: order, temporalWorkflowId: "wf" });
    assert.equal((await alice.query(api.runs.get, { runId: run })).workOrderId, order);
  });

  test("the socket client fetches a new token when the server says the old one expired", async () => {
    const session = await worker.mutation(api.chatSessions.create, { userId: "carol", title: "first" });
    let fetched = 0;
    const authChanges = [];
    // Negative leeway: the client does not refresh ahead of time, so the server's
    // expiry (AuthError on the socket) is what makes it fetch a new token.
    const client = new ConvexClient(server.url, { authRefreshTokenLeewaySeconds: -60 });
    try {
      client.setAuth(
        async () => {
          fetched += 1;
          return provider.token("carol", 3);
        },
        (isAuthenticated) => authChanges.push(isAuthenticated),
      );
      await waitFor(client, api.chatSessions.list, { userId: "carol" }, (s) => s.length === 1 && s[0]._id === session, "carol's first session", 20_000);
      const before = fetched;
      // Outlive the token, then write: the update must still reach the re-authenticated client.
      await new Promise((resolve) => setTimeout(resolve, 4_500));
      const seen = waitFor(client, api.chatSessions.list, { userId: "carol" }, (s) => s.length === 2, "carol's second session", 20_000);
      await worker.mutation(api.chatSessions.create, { userId: "carol", title: "second" });
      await seen;
      assert.ok(fetched > before, `a new token was fetched after expiry (${before} -> ${fetched})`);
      assert.ok(!authChanges.includes(false), `auth never failed: ${authChanges}`);
      assert.ok(authChanges.includes(true));
    } finally {
      await client.close();
    }
  });
});
