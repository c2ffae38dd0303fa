// Misuses the generated types must reject. This program must NOT compile:
// tests/codegen.rs checks that tsc reports an error on every line marked
// `// expect-error` and on no other line (tsconfig.wrong.json).

import { ConvexHttpClient } from "convex/browser";
import { api } from "./convex/_generated/api.js";
import type { Id } from "./convex/_generated/dataModel.js";

export async function misuse(client: ConvexHttpClient, workOrderId: Id<"work_orders">): Promise<void> {
  const sessionId = await client.mutation(api.chatSessions.create, { userId: "u1", title: "t" });

  await client.mutation(api.chatSessions.create, { userId: 42, title: "t" }); // expect-error
  await client.mutation(api.chatSessions.create, { userId: "u1" }); // expect-error
  await client.mutation(api.chatSessions.create, { userId: "u1", title: "t", color: "red" }); // expect-error
  await client.query(api.chatSessions.create, { userId: "u1", title: "t" }); // expect-error
  await client.mutation(api.chatMessages.append, { sessionId: "abc", role: "user", content: "x" }); // expect-error
  await client.mutation(api.chatMessages.append, { sessionId: workOrderId, role: "user", content: "x" }); // expect-error
  await client.mutation(api.chatMessages.append, { sessionId, role: "robot", content: "x" }); // expect-error
  await client.query(api.chatSessions.noSuchFunction, {}); // expect-error

  const workOrder = await client.query(api.workOrders.get, { workOrderId });
  console.log(workOrder.status); // expect-error
}
