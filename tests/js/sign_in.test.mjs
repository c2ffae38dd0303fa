// Issue 17: users signed in by Jangar itself, through @convex-dev/auth's own React client
// (ConvexAuthProvider, useAuthActions) in Debian's headless Chromium. The app (sign-in-app/)
// is bundled here with esbuild and served from another origin, as a real frontend is; the
// deployment has an admin key, so a caller without a token is refused.
//
// The steps share one server and one browser and run in order.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { ConvexHttpClient } from "convex/browser";
import { anyApi } from "convex/server";
import esbuild from "esbuild";

import { launchBrowser } from "./browser.mjs";
import { startServer } from "./server.mjs";

const api = anyApi;
const HERE = path.dirname(new URL(import.meta.url).pathname);
const ADMIN_KEY = "sign-in-test-admin-key";
// Short enough that the test outlives a token (the client refreshes ten seconds before the end).
const TOKEN_SECONDS = 15;
const WAIT_MS = 20_000;

async function bundle() {
  const built = await esbuild.build({
    entryPoints: [path.join(HERE, "sign-in-app", "app.jsx")],
    bundle: true,
    write: false,
    format: "iife",
    jsx: "automatic",
    define: { "process.env.NODE_ENV": '"production"' },
    logLevel: "error",
  });
  return built.outputFiles[0].text;
}

/** Serves the app's page on a loopback port of its own: another origin than the deployment's. */
async function servePage(script, jangarUrl) {
  const server = createServer((_, response) => {
    const html = `<!doctype html><html><body><div id="root"></div>
<script>window.JANGAR_URL = ${JSON.stringify(jangarUrl())};</script>
<script>${script.replaceAll("</script", "<\\/script")}</script></body></html>`;
    response.writeHead(200, { "content-type": "text/html" }).end(html);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { origin: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}

/** The client's storage keys: the deployment URL without its punctuation. */
const storageKey = (name, url) => `${name}_${url.replace(/[^a-zA-Z0-9]/g, "")}`;

describe("signing in with @convex-dev/auth's React client", () => {
  let server, page, browser, alicePage, bobPage;
  let jwtKey, refreshKey;
  const stored = (tab, key) => tab.evaluate((k) => localStorage.getItem(k), key);

  before(async () => {
    page = await servePage(await bundle(), () => server.url);
    server = await startServer({
      env: { JANGAR_ADMIN_KEY: ADMIN_KEY },
      extraArgs: ["--cors-origin", page.origin, "--auth-token-lifetime", `${TOKEN_SECONDS}s`],
    });
    jwtKey = storageKey("__convexAuthJWT", server.url);
    refreshKey = storageKey("__convexAuthRefreshToken", server.url);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await page?.close();
    await server?.stop();
  });

  async function signUp(tab, email, password, flow = "signUp") {
    await tab.waitForSelector("#sign-in", { timeout: WAIT_MS });
    await tab.$eval("#email", (input) => (input.value = ""));
    await tab.type("#email", email);
    await tab.$eval("#password", (input) => (input.value = ""));
    await tab.type("#password", password);
    await tab.select("#flow", flow);
    await tab.click("#submit");
  }

  const threads = (tab) => tab.$$eval("#threads li", (items) => items.map((item) => item.textContent));

  test("a user signs up and sees their own threads", async () => {
    alicePage = await browser.newPage();
    await alicePage.goto(page.origin);
    await signUp(alicePage, "alice@example.com", "alice's password");
    await alicePage.waitForSelector("#signed-in", { timeout: WAIT_MS });
    assert.equal(await alicePage.$eval("#who", (p) => p.textContent), "alice@example.com");
    await alicePage.click("#new-thread");
    await alicePage.waitForFunction(() => document.querySelectorAll("#threads li").length === 1, { timeout: WAIT_MS });
    assert.deepEqual(await threads(alicePage), ["thread 1"]);
  });

  test("a reload keeps the user signed in", async () => {
    await alicePage.reload();
    await alicePage.waitForSelector("#signed-in", { timeout: WAIT_MS });
    await alicePage.waitForFunction(() => document.querySelectorAll("#threads li").length === 1, { timeout: WAIT_MS });
  });

  test("the client refreshes its token past the access token's expiry without the user noticing", async () => {
    const first = await stored(alicePage, jwtKey);
    assert.ok(first, "a token is stored");
    const claims = (jwt) => JSON.parse(Buffer.from(jwt.split(".")[1], "base64url").toString());
    const firstExpiry = claims(first).exp;
    assert.equal(firstExpiry - claims(first).iat, TOKEN_SECONDS);
    // Past that token's end.
    await new Promise((resolve) => setTimeout(resolve, (firstExpiry + 2) * 1000 - Date.now()));
    const now = await stored(alicePage, jwtKey);
    assert.notEqual(now, first, "a newer token");
    assert.ok(claims(now).exp * 1000 > Date.now(), "and it has not expired");
    await alicePage.click("#new-thread");
    await alicePage.waitForFunction(() => document.querySelectorAll("#threads li").length === 2, { timeout: WAIT_MS });
  });

  test("a second user in another browser context sees none of the first one's threads", async () => {
    const context = await browser.createBrowserContext();
    bobPage = await context.newPage();
    await bobPage.goto(page.origin);
    await signUp(bobPage, "bob@example.com", "bob's password");
    await bobPage.waitForSelector("#signed-in", { timeout: WAIT_MS });
    assert.deepEqual(await threads(bobPage), []);
    // Not through the app either: Bob's token cannot list or read Alice's threads.
    const bob = new ConvexHttpClient(server.url);
    bob.setAuth(await stored(bobPage, jwtKey));
    const alice = await alicePage.$eval("#signed-in", (div) => div.dataset.user);
    await assert.rejects(bob.query(api.threads.list, { userId: alice }), /Forbidden|not the signed-in user/);
    const aliceClient = new ConvexHttpClient(server.url);
    aliceClient.setAuth(await stored(alicePage, jwtKey));
    const [thread] = await aliceClient.query(api.threads.list, { userId: alice });
    assert.equal(await bob.query(api.threads.get, { threadId: thread._id }), null);
  });

  test("signing out ends the session and the deployment refuses the signed-out client", async () => {
    const refreshToken = await stored(alicePage, refreshKey);
    await alicePage.click("#sign-out");
    await alicePage.waitForSelector("#sign-in", { timeout: WAIT_MS });
    assert.equal(await stored(alicePage, jwtKey), null);
    const refreshed = await new ConvexHttpClient(server.url).action(api.auth.signIn, { refreshToken });
    assert.deepEqual(refreshed, { tokens: null }, "the session's refresh token no longer works");
    await assert.rejects(new ConvexHttpClient(server.url).query(api.users.viewer, {}), /401|Unauthenticated/);
  });

  test("a wrong password is refused with the library's error", async () => {
    await signUp(alicePage, "alice@example.com", "not alice's password", "signIn");
    await alicePage.waitForSelector("#error", { timeout: WAIT_MS });
    assert.match(await alicePage.$eval("#error", (p) => p.textContent), /InvalidSecret/);
    await signUp(alicePage, "alice@example.com", "alice's password", "signIn");
    await alicePage.waitForSelector("#signed-in", { timeout: WAIT_MS });
    await alicePage.waitForFunction(() => document.querySelectorAll("#threads li").length === 2, { timeout: WAIT_MS });
  });
});
