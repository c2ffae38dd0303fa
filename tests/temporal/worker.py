"""A Temporal worker for Jangar's work-order bridge tests and bench/temporal.py.

    python worker.py --address 127.0.0.1:7233 --task-queue jangar [--namespace default] [--identity NAME]

Registers one workflow, `JangarEcho`, whose single optional argument (a JSON object, or nothing at
all) picks what it does by its "mode":
  succeed (the default)  return {"ok": true, "workOrderId", "echo": arg, "echoText"} (+ prUrl, commitSha)
  fail                   fail the workflow with an ApplicationError of type "JangarTestFailure"
  wait                   wait for the signal "finish", then succeed; a cancel request ends it CANCELED
  sleep                  sleep arg["seconds"] (a durable timer), then succeed
"echoText" is the argument as compact JSON, so a test can check it arrived byte for byte.
Prints "ready" once the worker polls; exits 0 on SIGTERM or SIGINT.
"""
import argparse
import asyncio
import json
import os
import signal
import sys
from typing import Any

from temporalio import workflow
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker


def success(arg: Any) -> dict:
    """What a workflow that did its job returns."""
    if arg is None:
        return {"ok": True, "echo": None}
    order = arg.get("workOrderId") if isinstance(arg, dict) else None
    text = json.dumps(arg, ensure_ascii=False, separators=(",", ":"))
    result = {"ok": True, "workOrderId": order, "echo": arg, "echoText": text}
    if isinstance(arg, dict):
        for key in ("prUrl", "commitSha"):
            if key in arg:
                result[key] = arg[key]
    return result


@workflow.defn(name="JangarEcho")
class JangarEcho:
    def __init__(self) -> None:
        self.finished = False

    @workflow.signal(name="finish")
    def finish(self) -> None:
        self.finished = True

    @workflow.run
    async def run(self, arg: Any = None) -> dict:
        mode = arg.get("mode", "succeed") if isinstance(arg, dict) else "succeed"
        if mode == "fail":
            message = "asked to fail: " + str(arg.get("message", ""))
            raise ApplicationError(message, type="JangarTestFailure", non_retryable=True)
        if mode == "wait":
            # Cancelling the workflow cancels this wait; the CancelledError ends the run CANCELED.
            await workflow.wait_condition(lambda: self.finished)
        elif mode == "sleep":
            await asyncio.sleep(float(arg["seconds"]))
        return success(arg)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="the Temporal frontend (gRPC), host:port")
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--identity", default=f"jangar-test-worker-{os.getpid()}")
    args = parser.parse_args()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    client = await Client.connect(args.address, namespace=args.namespace, identity=args.identity)
    async with Worker(client, task_queue=args.task_queue, workflows=[JangarEcho]):
        print("ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
    # The worker has shut down. Skip the interpreter's finalization: the SDK's Rust threads may still
    # call into Python while it runs (seen: an abort in PyGILState_Release, a segfault, exit 134/139).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
