"""The PyPI `convex` client (WebSocket sync) against a Jangar server started on a free loopback port."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from convex import ConvexClient, ConvexError

REPO = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_url():
    binary = os.environ.get("JANGAR_BIN", str(REPO / "target" / "debug" / "jangar"))
    data = tempfile.mkdtemp(prefix="jangar-py-")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
    shutil.rmtree(data, ignore_errors=True)


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
