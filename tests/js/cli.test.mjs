// The official `npx convex` CLI (the npm `convex` package's own binary) against Jangar, as an
// operator runs it: CONVEX_SELF_HOSTED_URL and CONVEX_SELF_HOSTED_ADMIN_KEY, CI=1 (no crash
// reporting, no prompts). Each command's output is checked, and the ones Jangar refuses must
// fail within seconds with its reason, not after the CLI's half a minute of retries.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtemp, mkdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { stripVTControlCharacters } from "node:util";
import { ConvexHttpClient } from "convex/browser";
import { anyApi } from "convex/server";
import { REPO_ROOT, startServer } from "./server.mjs";

const api = anyApi;
const CLI = path.join(REPO_ROOT, "tests", "js", "node_modules", ".bin", "convex");
const ADMIN_KEY = "cli-test-admin-key";
// Each refused command must be answered long before the CLI's retries of a 404 (about 34 s).
const FAST_MS = 10_000;

/** The CLI's environment: a self-hosted deployment at `url`, no prompts. */
function cliEnv(url, key) {
  const env = { ...process.env, CI: "1", CONVEX_SELF_HOSTED_URL: url, CONVEX_SELF_HOSTED_ADMIN_KEY: key };
  delete env.CONVEX_DEPLOYMENT;
  return env;
}

/** Runs the CLI in `cwd`; resolves with its exit code, output and how long it took. */
function convex(args, { url, key = ADMIN_KEY, cwd }) {
  const env = cliEnv(url, key);
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(CLI, args, { cwd, env, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (error.code ?? 1) : 0, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/**
 * Starts `npx convex logs ARGS`, which runs until killed. `shows(pattern)` waits until its
 * output (colours stripped) matches; `stop()` kills it.
 */
function watchLogs(args, { url, cwd }) {
  const child = spawn(CLI, ["logs", ...args], { cwd, env: cliEnv(url, ADMIN_KEY), stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk) => (stdout += chunk));
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const output = () => stripVTControlCharacters(stdout);
  return {
    output,
    async shows(pattern, what) {
      const deadline = Date.now() + 30_000;
      while (!pattern.test(output())) {
        if (Date.now() > deadline || child.exitCode !== null) {
          throw new Error(`npx convex logs did not show ${what}:\n${output()}\n--- stderr ---\n${stderr}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

/** A project directory as `npx convex` expects one: package.json listing convex, a convex/ folder. */
async function project() {
  const dir = await mkdtemp(path.join(tmpdir(), "jangar-cli-"));
  await writeFile(path.join(dir, "package.json"), JSON.stringify({ name: "app", dependencies: { convex: "1.48.0" } }));
  await mkdir(path.join(dir, "convex"));
  await symlink(path.join(REPO_ROOT, "tests", "js", "node_modules"), path.join(dir, "node_modules"));
  return dir;
}

describe("npx convex against a keyed deployment", () => {
  let server;
  let dir;
  const run = (args) => convex(args, { url: server.url, cwd: dir });

  before(async () => {
    server = await startServer({ env: { JANGAR_ADMIN_KEY: ADMIN_KEY } });
    dir = await project();
    const client = new ConvexHttpClient(server.url);
    client.setAdminAuth(ADMIN_KEY);
    await client.mutation(api.chatSessions.create, { userId: "u1", title: "first" });
  });

  after(async () => {
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("data lists every table", async () => {
    const { code, stdout, stderr } = await run(["data"]);
    assert.equal(code, 0, stderr);
    const tables = stdout.split("\n").map((l) => l.trim()).filter(Boolean);
    for (const table of ["chat_sessions", "chat_messages", "work_orders", "runs", "approval_requests"]) {
      assert.ok(tables.includes(table), `${table} in ${stdout}`);
    }
  });

  test("data <table> pages documents in creation order, newest first unless asked", async () => {
    const client = new ConvexHttpClient(server.url);
    client.setAdminAuth(ADMIN_KEY);
    for (const title of ["second", "third"]) await client.mutation(api.chatSessions.create, { userId: "u1", title });
    const newest = await run(["data", "chat_sessions", "--limit", "2", "--format", "jsonl"]);
    assert.equal(newest.code, 0, newest.stderr);
    const titles = (out) => out.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l).title);
    assert.deepEqual(titles(newest.stdout), ["third", "second"]);
    const pretty = await run(["data", "chat_sessions", "--limit", "1"]);
    assert.match(pretty.stdout + pretty.stderr, /"third"[\s\S]*Showing the 1 most recently created document/);
    const oldest = await run(["data", "chat_sessions", "--order", "asc", "--format", "jsonl"]);
    assert.equal(oldest.code, 0, oldest.stderr);
    assert.deepEqual(titles(oldest.stdout), ["first", "second", "third"]);
    const document = JSON.parse(oldest.stdout.split("\n")[0]);
    assert.equal(typeof document._creationTime, "number");
    assert.match(document._id, /^[0-9a-z]{31,37}$/);
  });

  test("logs shows successes with --success, failures with their error, and calls made while it watches", async () => {
    const client = new ConvexHttpClient(server.url);
    client.setAdminAuth(ADMIN_KEY);
    await client.mutation(api.chatSessions.create, { userId: "u1", title: "logged" });
    await assert.rejects(client.mutation(api.chatSessions.create, { userId: "u1" }), /ArgumentValidationError/);
    // A bare --history shows every call of the first answer: `--history n` shows the last
    // 2 * total - n when fewer than n are kept (the CLI slices from total - n).
    const logs = watchLogs(["--history", "--success"], { url: server.url, cwd: dir });
    try {
      await logs.shows(/\[CONVEX M\(chatSessions\.js:create\)\] Function executed in \d+ ms/, "the mutation");
      await logs.shows(
        /\[CONVEX M\(chatSessions\.js:create\)\] InvalidArgument: ArgumentValidationError for chatSessions:create/,
        "the failed mutation's error",
      );
      assert.doesNotMatch(logs.output(), /chatSessions\.js:list/);
      // The CLI is waiting in its long poll now: a new call must show without a restart.
      await client.query(api.chatSessions.list, { userId: "u1" });
      await logs.shows(/\[CONVEX Q\(chatSessions\.js:list\)\] Function executed in \d+ ms/, "the query made while watching");
    } finally {
      await logs.stop();
    }
  });

  test("logs --jsonl prints each call as Convex's FunctionExecution JSON", async () => {
    const client = new ConvexHttpClient(server.url);
    client.setAdminAuth(ADMIN_KEY);
    await client.mutation(api.chatSessions.create, { userId: "u1", title: "as json" });
    const logs = watchLogs(["--history", "--jsonl"], { url: server.url, cwd: dir });
    try {
      await logs.shows(/"identifier":"chatSessions\.js:create"/, "the mutation as JSON");
    } finally {
      await logs.stop();
    }
    const entries = logs.output().split("\n").filter((line) => line.startsWith("{")).map((line) => JSON.parse(line));
    const created = entries.at(-1);
    assert.equal(created.kind, "Completion");
    assert.equal(created.udfType, "Mutation");
    assert.equal(created.identifier, "chatSessions.js:create");
    assert.deepEqual(created.logLines, []);
    assert.equal(created.caller, "admin");
    assert.equal(typeof created.executionTime, "number");
    assert.ok(Math.abs(created.timestamp - Date.now() / 1000) < 60, `${created.timestamp} is seconds since the epoch`);
    assert.match(created.requestId, /^[0-9a-f]{16}$/);
    assert.equal(created.error, undefined);
  });

  test("data of a table that does not exist says so", async () => {
    const { code, stderr } = await run(["data", "no_such_table"]);
    assert.notEqual(code, 0);
    assert.match(stderr, /There is no table named "no_such_table"/);
  });

  test("env set, list, get and remove keep variables in the deployment", async () => {
    for (const [name, value] of [["OPENAI_MODEL", "gpt-5"], ["GREETING", "hello world"]]) {
      const set = await run(["env", "set", name, value]);
      assert.equal(set.code, 0, set.stderr);
      assert.match(set.stderr + set.stdout, new RegExp(`Successfully set ${name}`));
    }
    const listed = await run(["env", "list"]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(listed.stdout.trim().split("\n"), ["GREETING=hello world", "OPENAI_MODEL=gpt-5"]);
    const got = await run(["env", "get", "GREETING"]);
    assert.equal(got.stdout.trim(), "hello world");
    const removed = await run(["env", "remove", "GREETING"]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.match(removed.stderr + removed.stdout, /Successfully unset GREETING/);
    assert.deepEqual((await run(["env", "list"])).stdout.trim().split("\n"), ["OPENAI_MODEL=gpt-5"]);
    const bad = await run(["env", "set", "1BAD", "x"]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /400 Bad Request: InvalidArgument: "1BAD" is not a valid environment variable name/);
    // A system table: not among the app's tables.
    assert.doesNotMatch((await run(["data"])).stdout, /environment/);
  });

  test("export writes Convex's snapshot ZIP, and import --replace reads it back, ids kept", async () => {
    const zip = path.join(dir, "snapshot.zip");
    const exported = await run(["export", "--path", zip]);
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stderr, /Downloaded snapshot export to/);
    const client = new ConvexHttpClient(server.url);
    client.setAdminAuth(ADMIN_KEY);
    const before = await client.query(api.chatSessions.list, { userId: "u1" });
    await client.mutation(api.chatSessions.create, { userId: "u1", title: "after the export" });
    const refused = await run(["import", zip, "-y"]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /ImportConflict: Table "[a-z_]+" is not empty/);
    const replaced = await run(["import", "--replace", "-y", zip]);
    assert.equal(replaced.code, 0, replaced.stderr);
    assert.match(replaced.stderr, /Added \d+ documents/);
    const after = await client.query(api.chatSessions.list, { userId: "u1" });
    assert.deepEqual(after, before, "the sessions are the exported ones, ids and creation times included");
  });

  test("import of one table from JSON lines, and a bad line reported with its number", async () => {
    const file = path.join(dir, "teams.jsonl");
    await writeFile(file, '{"name":"platform","createdAt":1}\n{"name":"infra","createdAt":2}\n');
    const added = await run(["import", "--table", "teams", "--append", "-y", file]);
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stderr, /Added 2 documents to table "teams"/);
    await writeFile(file, '{"name":"ok","createdAt":1}\n{"name":7,"createdAt":2}\n');
    const bad = await run(["import", "--table", "teams", "--append", "-y", file]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /InvalidDocument: line 2 of "teams"/);
    const listed = await run(["data", "teams", "--format", "jsonl"]);
    assert.equal(listed.stdout.trim().split("\n").length, 2, "nothing of the failed import was written");
  });

  test("function-spec describes the catalogue with Convex's validator JSON", async () => {
    const { code, stdout, stderr } = await run(["function-spec"]);
    assert.equal(code, 0, stderr);
    const spec = JSON.parse(stdout);
    assert.equal(spec.url, server.url);
    const create = spec.functions.find((f) => f.identifier === "chatSessions.js:create");
    assert.equal(create.functionType, "Mutation");
    assert.deepEqual(create.visibility, { kind: "public" });
    assert.deepEqual(create.args.value.userId, { fieldType: { type: "string" }, optional: false });
    assert.deepEqual(create.args.value.repoId, { fieldType: { type: "id", tableName: "repos" }, optional: true });
    assert.deepEqual(create.returns, { type: "id", tableName: "chat_sessions" });
    assert.ok(!spec.functions.some((f) => f.identifier.startsWith("_system")), "system queries are not listed");
  });

  test("run of an unknown function lists the functions there are", async () => {
    const { code, stderr } = await run(["run", "nosuch:fn"]);
    assert.notEqual(code, 0);
    assert.match(stderr, /Could not find function for 'nosuch:fn'/);
    assert.match(stderr, /Available functions:[\s\S]*chatSessions:create/);
  });

  for (const [what, args, pattern] of [
    ["deploy", ["deploy"], /400 Bad Request: PushNotSupported: .*fixed function catalogue/],
    ["dev --once", ["dev", "--once"], /PushNotSupported/],
    ["run --inline-query", ["run", "--inline-query", "return 1"], /400 Bad Request: InlineQueryNotSupported/],
  ]) {
    test(`${what} fails at once, saying why`, async () => {
      const { code, stderr, ms } = await run(args);
      assert.notEqual(code, 0);
      assert.match(stderr, pattern);
      assert.ok(ms < FAST_MS, `took ${ms} ms`);
    });
  }

  test("a wrong admin key is refused", async () => {
    const { code, stderr } = await convex(["run", "chatSessions:list", '{"userId":"u1"}'], {
      url: server.url,
      key: "not-the-key",
      cwd: dir,
    });
    assert.notEqual(code, 0);
    assert.match(stderr, /Unauthenticated|admin key is not valid/);
  });

  test("the system queries are for admins only", async () => {
    const client = new ConvexHttpClient(server.url);
    await assert.rejects(client.query("_system/cli/tables:default", {}), /Unauthenticated|401/);
    const response = await fetch(`${server.url}/api/update_environment_variables`, {
      method: "POST",
      body: JSON.stringify({ changes: [{ name: "X", value: "y" }] }),
    });
    assert.equal(response.status, 401);
  });
});

describe("npx convex against a deployment in open development mode", () => {
  let server;
  let dir;

  before(async () => {
    server = await startServer();
    dir = await project();
  });

  after(async () => {
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("any admin key the CLI presents is accepted", async () => {
    const created = await convex(["run", "chatSessions:create", '{"userId":"u1","title":"open"}'], {
      url: server.url,
      key: "whatever-the-cli-was-given",
      cwd: dir,
    });
    assert.equal(created.code, 0, created.stderr);
    const listed = await convex(["run", "chatSessions:list", '{"userId":"u1"}'], { url: server.url, key: "any", cwd: dir });
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /"title": "open"/);
    const data = await convex(["data"], { url: server.url, key: "another", cwd: dir });
    assert.equal(data.code, 0, data.stderr);
    assert.match(data.stdout, /chat_sessions/);
  });
});
