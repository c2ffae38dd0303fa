// A small client of Jangar written against the bindings `jangar codegen`
// generates, the way an app uses Convex's `convex/_generated`. It is only
// type-checked (tests/codegen.rs, tsconfig.json), never run: it must compile.

import { ConvexClient, ConvexHttpClient } from "convex/browser";
import type {
  FunctionArgs,
  FunctionReference,
  FunctionReturnType,
  GenericDataModel,
  OptionalRestArgs,
} from "convex/server";
import { api } from "./convex/_generated/api.js";
import type { DataModel, Doc, Id, TableNames } from "./convex/_generated/dataModel.js";

// `Expect<Equal<A, B>>` compiles only if A and B are the same type; `any` equals nothing else.
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Expect<T extends true> = T;
type IsAny<T> = 0 extends 1 & T ? true : false;

export type TypeChecks = [
  Expect<Equal<FunctionArgs<typeof api.chatSessions.create>, { repoId?: Id<"repos">; title: string; userId: string }>>,
  Expect<Equal<FunctionReturnType<typeof api.chatSessions.create>, Id<"chat_sessions">>>,
  Expect<Equal<FunctionReturnType<typeof api.workOrders.get>, Doc<"work_orders"> | null>>,
  Expect<Equal<FunctionReturnType<typeof api.chatSessions.get>, Doc<"chat_sessions"> | null>>,
  Expect<Equal<Doc<"chat_sessions">["userId"], string>>,
  Expect<Equal<Doc<"chat_sessions">["_id"], Id<"chat_sessions">>>,
  Expect<Equal<Doc<"chat_sessions">["_creationTime"], number>>,
  Expect<Equal<Doc<"chat_messages">["sessionId"], Id<"chat_sessions">>>,
  Expect<Equal<IsAny<Doc<"work_orders">["status"]>, false>>,
  Expect<Equal<IsAny<FunctionArgs<typeof api.chatMessages.listBySession>>, false>>,
  Expect<"chat_sessions" extends TableNames ? true : false>,
  Expect<"work_orders" extends TableNames ? true : false>,
  Expect<DataModel extends GenericDataModel ? true : false>,
  // Ids of different tables are different types, and neither is a plain string.
  Expect<Equal<Id<"chat_sessions"> extends Id<"work_orders"> ? true : false, false>>,
  Expect<Equal<string extends Id<"chat_sessions"> ? true : false, false>>,
];

// What React's `useQuery` and `useMutation` from "convex/react" declare, without installing React.
declare function useQuery<Query extends FunctionReference<"query">>(
  query: Query,
  ...args: OptionalRestArgs<Query>
): FunctionReturnType<Query> | undefined;
declare function useMutation<Mutation extends FunctionReference<"mutation">>(
  mutation: Mutation,
): (...args: OptionalRestArgs<Mutation>) => Promise<FunctionReturnType<Mutation>>;

function pageOf<T>(result: T[] | { page: T[]; isDone: boolean; continueCursor: string }): T[] {
  return Array.isArray(result) ? result : result.page;
}

export async function chat(url: string, userId: string): Promise<string> {
  const client = new ConvexHttpClient(url);

  const sessionId: Id<"chat_sessions"> = await client.mutation(api.chatSessions.create, {
    userId,
    title: "Fix the flaky test",
  });
  const messageId: Id<"chat_messages"> = await client.mutation(api.chatMessages.append, {
    sessionId,
    role: "user",
    content: "The sync test fails one run in ten.",
    metadata: { source: "app.ts" },
  });

  const listed = await client.query(api.chatMessages.listBySession, { sessionId, limit: 50 });
  const messages: Doc<"chat_messages">[] = Array.isArray(listed) ? listed : listed.page;
  const roles = messages.map((m) => m.role);
  const mine = messages.find((m) => m._id === messageId);

  const paged = await client.query(api.chatMessages.listBySession, {
    sessionId,
    paginationOpts: { numItems: 20, cursor: null },
  });
  let cursor: string | null = null;
  if (!Array.isArray(paged)) {
    cursor = paged.isDone ? null : paged.continueCursor;
  }

  const workOrderId = await client.mutation(api.workOrders.create, { sessionId, title: "Deflake" });
  const workOrder = await client.query(api.workOrders.get, { workOrderId });
  const status: Doc<"work_orders">["status"] | "missing" = workOrder === null ? "missing" : workOrder.status;

  const session = await client.query(api.chatSessions.get, { sessionId });
  const title: string = session?.title ?? "(deleted)";

  return [title, roles.join(","), mine?.content ?? "", cursor ?? "", status].join(" ");
}

export function live(url: string): () => void {
  const client = new ConvexClient(url);
  const unsubscribe = client.onUpdate(api.chatSessions.list, { userId: "u1" }, (result) => {
    const titles: string[] = pageOf(result).map((s) => s.title);
    console.log(titles);
  });
  return () => {
    unsubscribe();
    void client.close();
  };
}

// React-style use: references typed as `FunctionReference`s of the right kind.
const listRef: FunctionReference<"query"> = api.chatSessions.list;
const getRef: FunctionReference<"query", "public"> = api.workOrders.get;
const createRef: FunctionReference<"mutation"> = api.chatSessions.create;

export function SessionTitles(props: { userId: string; sessionId: Id<"chat_sessions"> }): string[] {
  const sessions = useQuery(api.chatSessions.list, { userId: props.userId });
  const messages = useQuery(api.chatMessages.listBySession, { sessionId: props.sessionId });
  const rename = useMutation(api.chatSessions.rename);
  void rename({ sessionId: props.sessionId, title: "Renamed" });
  const count = messages === undefined ? 0 : pageOf(messages).length;
  return sessions === undefined ? [] : pageOf(sessions).map((s) => `${s.title} (${count})`);
}

export const references = [listRef, getRef, createRef];
