// One npm ConvexClient sends IN_FLIGHT chatMessages:append to one session at
// once and waits for every answer; prints one JSON line with the rate.
//   node bench/socket_mutations.mjs URL SESSION_ID IN_FLIGHT
// The client comes from tests/js/node_modules (scripts/test installs it there).
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "tests", "js", "package.json"));
const { ConvexClient } = require("convex/browser");
const { anyApi } = require("convex/server");

const [url, sessionId, inFlight] = process.argv.slice(2);
const n = Number(inFlight);
const client = new ConvexClient(url);
// One mutation first, so the socket is open before the clock starts.
await client.mutation(anyApi.chatMessages.append, { sessionId, role: "user", content: "warm-up" });
const started = process.hrtime.bigint();
const ids = await Promise.all(
  Array.from({ length: n }, (_, i) =>
    client.mutation(anyApi.chatMessages.append, { sessionId, role: "user", content: `m${i}` }),
  ),
);
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
const { connectionCount } = client.connectionState();
await client.close();
console.log(JSON.stringify({ inFlight: n, answered: new Set(ids).size, seconds, rate: n / seconds, connectionCount }));
