"""The PyPI `convex` client (WebSocket sync) against a Jangar server started on a free loopback port."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from convex import ConvexClient, ConvexError

REPO = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ADMIN_KEY = "python-test-admin-key"


def postgres_args():
    """With JANGAR_TEST_POSTGRES (scripts/test's PostgreSQL pass), a fresh database there."""
    base = os.environ.get("JANGAR_TEST_POSTGRES")
    if not base:
        return []
    name = f"py_{os.getpid()}_{free_port()}"
    subprocess.run(["psql", f"{base}/postgres", "-qc", f"CREATE DATABASE {name}"], check=True)
    return ["--db", f"{base}/{name}"]


def run_server(env):
    """A server for a module's tests; when they are done, `jangar check` must find every index
    matching its documents."""
    binary = os.environ.get("JANGAR_BIN", str(REPO / "target" / "debug" / "jangar"))
    data = tempfile.mkdtemp(prefix="jangar-py-")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    store = ["--data-dir", data] + postgres_args()
    proc = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}"] + store,
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 10
    while True:
        try:
            urllib.request.urlopen(f"{url}/version", timeout=1)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"server did not start: {proc.stderr.read().decode()}")
            time.sleep(0.05)
    yield url
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    check = subprocess.run([binary, "check"] + store, capture_output=True, text=True)
    shutil.rmtree(data, ignore_errors=True)
    assert check.returncode == 0, f"jangar check: {check.stdout}{check.stderr}"


@pytest.fixture(scope="module")
def server_url():
    yield from run_server({})


@pytest.fixture(scope="module")
def keyed_server_url():
    yield from run_server({"JANGAR_ADMIN_KEY": ADMIN_KEY})


def test_a_keyed_deployment_needs_the_admin_key(keyed_server_url):
    anonymous = ConvexClient(keyed_server_url)
    with pytest.raises(ConvexError) as refused:
        anonymous.mutation("chatSessions:create", {"userId": "py", "title": "no key"})
    assert refused.value.data["code"] == "Unauthenticated"
    worker = ConvexClient(keyed_server_url)
    worker.set_admin_auth(ADMIN_KEY)
    session_id = worker.mutation("chatSessions:create", {"userId": "py", "title": "with the key"})
    order_id = worker.mutation("workOrders:create", {"sessionId": session_id, "title": "t"})
    run_id = worker.mutation("runs:start", {"workOrderId": order_id, "temporalWorkflowId": "wf"})
    assert worker.query("runs:get", {"runId": run_id})["workOrderId"] == order_id


def test_query_and_mutation(server_url):
    client = ConvexClient(server_url)
    session_id = client.mutation("chatSessions:create", {"userId": "py", "title": "from python"})
    assert isinstance(session_id, str) and len(session_id) == 32
    session = client.query("chatSessions:get", {"sessionId": session_id})
    assert session["title"] == "from python"
    assert session["_id"] == session_id
    message_id = client.mutation("chatMessages:append", {"sessionId": session_id, "role": "user", "content": "hi"})
    messages = client.query("chatMessages:listBySession", {"sessionId": session_id})
    assert [(m["_id"], m["content"]) for m in messages] == [(message_id, "hi")]


def test_application_errors_carry_their_code(server_url):
    client = ConvexClient(server_url)
    session_id = client.mutation("chatSessions:create", {"userId": "py", "title": "errors"})
    order = client.mutation("workOrders:create", {"sessionId": session_id, "status": "draft"})
    with pytest.raises(ConvexError) as raised:
        client.mutation("workOrders:updateStatus", {"workOrderId": order, "status": "succeeded"})
    assert raised.value.data["code"] == "InvalidTransition"
    assert raised.value.data["from"] == "draft"


def test_a_subscription_yields_the_new_value_after_a_write(server_url):
    watcher = ConvexClient(server_url)
    writer = ConvexClient(server_url)
    session_id = writer.mutation("chatSessions:create", {"userId": "py", "title": "live"})
    subscription = watcher.subscribe("chatMessages:listBySession", {"sessionId": session_id})
    values = iter(subscription)
    assert next(values) == []

    writer.mutation("chatMessages:append", {"sessionId": session_id, "role": "assistant", "content": "pushed"})
    for value in values:
        if value:
            assert [m["content"] for m in value] == ["pushed"]
            break
    subscription.unsubscribe()


def test_thousands_of_mutations_in_flight_on_one_client_complete_once_each_in_order(server_url):
    """One client shared by 2,000 threads, five mutations each: 10,000 mutations on one socket, as
    many at once as the client sends (a server answering one at a time once disconnected a client
    with 2,000 in flight, over and over)."""
    client = ConvexClient(server_url)
    session_id = client.mutation("chatSessions:create", {"userId": "py", "title": "in flight"})
    senders, each = 2_000, 5

    def send(sender):
        return [client.mutation("chatMessages:append",
                                {"sessionId": session_id, "role": "user", "content": f"{sender}:{k}"})
                for k in range(each)]

    with ThreadPoolExecutor(max_workers=senders) as pool:
        ids = [i for answered in pool.map(send, range(senders)) for i in answered]
    assert len(set(ids)) == senders * each

    contents, cursor = [], None
    while True:
        page = client.query("chatMessages:listBySession",
                            {"sessionId": session_id, "paginationOpts": {"numItems": 1000, "cursor": cursor}})
        contents += [m["content"] for m in page["page"]]
        if page["isDone"]:
            break
        cursor = page["continueCursor"]
    assert len(contents) == senders * each, "each applied exactly once"
    # Each thread waits for one answer before it sends the next: its mutations commit in its order.
    seen = {}
    for content in contents:
        sender, k = map(int, content.split(":"))
        assert k == seen.get(sender, -1) + 1, f"sender {sender}: {k} after {seen.get(sender)}"
        seen[sender] = k
