// Starts a Jangar server for the end-to-end tests and stops it again.
//
//   const server = await startServer();   // { url, stop(), restart(), output() }
//   ...
//   await server.stop();
//
// The binary is $JANGAR_BIN (resolved against the current directory) or, by
// default, target/debug/jangar in the repository that holds this file. Every
// server gets a fresh data directory and a free port on 127.0.0.1; both are
// gone after stop(). With $JANGAR_TEST_POSTGRES it stores into a fresh
// PostgreSQL database instead. stop() runs `jangar check` on what the server
// stored and throws if any index does not match its documents, so every
// scenario ends with the integrity check.

import { execFileSync, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, "..", "..");

const STARTUP_TIMEOUT_MS = 10_000;
const POLL_INTERVAL_MS = 50;
const STOP_GRACE_MS = 5_000;
// Keep at most this much of the server's output for error messages.
const MAX_OUTPUT_CHARS = 64 * 1024;

export function jangarBin() {
  const fromEnv = process.env.JANGAR_BIN;
  if (fromEnv !== undefined && fromEnv !== "") {
    return path.resolve(fromEnv);
  }
  return path.join(REPO_ROOT, "target", "debug", "jangar");
}

// Asks the kernel for a free TCP port on 127.0.0.1 by listening on port 0.
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.unref();
    probe.once("error", reject);
    probe.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
      const { port } = probe.address();
      probe.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function describeExit(code, signal) {
  return signal !== null ? `signal ${signal}` : `exit code ${code}`;
}

let databases = 0;

// With JANGAR_TEST_POSTGRES (a server's base URL, set by scripts/test for its
// PostgreSQL pass), every server gets a fresh database there.
function postgresArgs() {
  const base = process.env.JANGAR_TEST_POSTGRES;
  if (base === undefined || base === "") return [];
  databases += 1;
  const name = `js_${process.pid}_${databases}`;
  execFileSync("psql", [`${base}/postgres`, "-qc", `CREATE DATABASE ${name}`]);
  return ["--db", `${base}/${name}`];
}

// `jangar check` on a stopped server's store: null when every index matches
// its documents, else what the check printed.
function integrityCheck(bin, store) {
  try {
    execFileSync(bin, ["check", ...store], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    return null;
  } catch (err) {
    const how = typeof err.status === "number" ? `exit code ${err.status}` : err.message;
    return `jangar check failed (${how}):\n${err.stdout ?? ""}${err.stderr ?? ""}`;
  }
}

export async function startServer({ env = {}, extraArgs = [] } = {}) {
  const bin = jangarBin();
  const dataDir = await mkdtemp(path.join(tmpdir(), "jangar-e2e-"));
  const port = await freePort();
  const listen = `127.0.0.1:${port}`;
  const url = `http://${listen}`;
  const store = ["--data-dir", dataDir, ...postgresArgs()];
  const args = ["serve", "--listen", listen, ...store, ...extraArgs];

  let output = "";
  const keep = (chunk) => {
    output += chunk.toString("utf8");
    if (output.length > MAX_OUTPUT_CHARS) {
      output = output.slice(output.length - MAX_OUTPUT_CHARS);
    }
  };

  // One run of the binary: restart() ends it and starts another on the same port and store.
  let child, spawnError, exitInfo, exitPromise;
  function launch() {
    child = spawn(bin, args, {
      cwd: dataDir,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    spawnError = null;
    exitInfo = null;
    child.once("error", (err) => {
      spawnError = err;
    });
    exitPromise = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        exitInfo = describeExit(code, signal);
        resolve(exitInfo);
      });
      // 'exit' is not emitted when the binary could not be spawned at all.
      child.once("error", () => resolve(null));
    });
  }

  async function end() {
    if (spawnError === null && exitInfo === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => {
        if (exitInfo === null) child.kill("SIGKILL");
      }, STOP_GRACE_MS);
      try {
        await exitPromise;
      } finally {
        clearTimeout(timer);
      }
    }
    // A grandchild that inherited the pipes must not keep the test alive.
    child.stdout.destroy();
    child.stderr.destroy();
  }

  let stopped = false;
  async function stop() {
    if (stopped) return;
    stopped = true;
    let check = null;
    try {
      await end();
      if (spawnError === null) check = integrityCheck(bin, store);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
    if (check !== null) throw new Error(`${check}\n${describe()}`);
  }

  const describe = () =>
    `${bin} ${args.join(" ")}\n--- server output ---\n${output || "(none)"}\n---------------------`;

  async function ready() {
    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    let lastProblem = "no answer yet";
    for (;;) {
      if (spawnError !== null) {
        throw new Error(
          `could not start the Jangar server (${spawnError.message}); ` +
            `build it first or set JANGAR_BIN\n${describe()}`,
        );
      }
      if (exitInfo !== null) {
        throw new Error(`the Jangar server exited during startup (${exitInfo})\n${describe()}`);
      }
      try {
        const res = await fetch(`${url}/version`, { signal: AbortSignal.timeout(1_000) });
        await res.arrayBuffer();
        if (res.status === 200) return;
        lastProblem = `GET /version answered ${res.status}`;
      } catch (err) {
        lastProblem = `GET /version failed: ${err.cause?.code ?? err.message}`;
      }
      if (Date.now() >= deadline) {
        throw new Error(
          `the Jangar server did not answer GET /version with 200 within ` +
            `${STARTUP_TIMEOUT_MS} ms (${lastProblem})\n${describe()}`,
        );
      }
      await sleep(POLL_INTERVAL_MS);
    }
  }

  launch();
  try {
    await ready();
  } catch (err) {
    await stop();
    throw err;
  }

  /** Stops the server (gracefully) and starts it again on the same port and store. */
  async function restart({ downMs = 0 } = {}) {
    await end();
    await sleep(downMs);
    launch();
    await ready();
  }

  return {
    url,
    port,
    dataDir,
    stop,
    restart,
    // The server's stdout and stderr so far (the last 64 KiB), for diagnostics.
    output: () => output,
  };
}
