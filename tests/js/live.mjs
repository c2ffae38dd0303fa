// Waiting on live queries of a ConvexClient, for the tests.

// Resolves with the first value of a live query that satisfies `ok`.
export function waitForValue(client, query, args, ok, what = JSON.stringify(args), timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    let last;
    let done = false;
    let unsubscribe = () => {};
    const timer = setTimeout(() => {
      done = true;
      unsubscribe();
      reject(new Error(`timed out waiting for ${what}; last value ${JSON.stringify(last)}`));
    }, timeoutMs);
    unsubscribe = client.onUpdate(
      query,
      args,
      (value) => {
        last = value;
        if (!done && ok(value)) {
          done = true;
          clearTimeout(timer);
          // onUpdate may call back before it returns its unsubscribe function.
          queueMicrotask(() => unsubscribe());
          resolve(value);
        }
      },
      (err) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
