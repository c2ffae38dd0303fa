// A minimal React app signing users in with @convex-dev/auth's own client, unchanged, against
// Jangar: what tests/js/sign_in.test.mjs drives in Chromium. Its threads belong to the signed-in
// user (`users:viewer`'s id is what `getAuthUserId` returns on Convex).
import React, { useState } from "react";
import { createRoot } from "react-dom/client";
import { ConvexReactClient, useConvexAuth, useMutation, useQuery } from "convex/react";
import { anyApi } from "convex/server";
import { ConvexAuthProvider, useAuthActions } from "@convex-dev/auth/react";

const api = anyApi;
const convex = new ConvexReactClient(window.JANGAR_URL);

function SignIn() {
  const { signIn } = useAuthActions();
  const [error, setError] = useState(null);
  const submit = (event) => {
    event.preventDefault();
    setError(null);
    signIn("password", new FormData(event.currentTarget)).catch((e) => setError(e.message));
  };
  return (
    <form id="sign-in" onSubmit={submit}>
      <input name="email" id="email" />
      <input name="password" id="password" type="password" />
      <select name="flow" id="flow" defaultValue="signUp">
        <option value="signUp">Sign up</option>
        <option value="signIn">Sign in</option>
      </select>
      <button type="submit" id="submit">Continue</button>
      {error && <p id="error">{error}</p>}
    </form>
  );
}

function Threads() {
  const viewer = useQuery(api.users.viewer, {});
  const threads = useQuery(api.threads.list, viewer ? { userId: viewer._id } : "skip");
  const create = useMutation(api.threads.create);
  const { signOut } = useAuthActions();
  if (!viewer || !threads) return <p id="loading">Loading…</p>;
  return (
    <div id="signed-in" data-user={viewer._id}>
      <p id="who">{viewer.email}</p>
      <ul id="threads">
        {threads.map((thread) => <li key={thread._id}>{thread.title}</li>)}
      </ul>
      <button id="new-thread" onClick={() => create({ userId: viewer._id, title: `thread ${threads.length + 1}` })}>
        New thread
      </button>
      <button id="sign-out" onClick={() => signOut()}>Sign out</button>
    </div>
  );
}

function App() {
  const { isLoading, isAuthenticated } = useConvexAuth();
  if (isLoading) return <p id="loading">Loading…</p>;
  return isAuthenticated ? <Threads /> : <SignIn />;
}

createRoot(document.getElementById("root")).render(
  <ConvexAuthProvider client={convex}>
    <App />
  </ConvexAuthProvider>,
);
