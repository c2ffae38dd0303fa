"""GET /metrics read with the Prometheus client library's OpenMetrics parser, after known calls:
the function counters and histograms per function and outcome, the commit and cache figures, the
sync gauges; on the API's port with the admin key, and on --metrics-listen without one."""

import json
import os
import urllib.error
import urllib.request

import pytest
from convex import ConvexClient
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from test_sync import ADMIN_KEY, free_port, run_server

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
# scripts/test's PostgreSQL pass.
ON_POSTGRES = bool(os.environ.get("JANGAR_TEST_POSTGRES"))


@pytest.fixture(scope="module")
def server():
    metrics_url = f"http://127.0.0.1:{free_port()}"
    env = {"JANGAR_ADMIN_KEY": ADMIN_KEY, "JANGAR_METRICS_LISTEN": metrics_url.removeprefix("http://")}
    running = run_server(env)
    url = next(running)
    yield url, metrics_url
    # The server stops and `jangar check` runs on what it stored.
    next(running, None)


def request(url, body=None, key=ADMIN_KEY):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Convex {key}"
    data = None if body is None else json.dumps(body).encode()
    return urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=10)


def call(url, route, path, args):
    with request(f"{url}/api/{route}", {"path": path, "args": args, "format": "json"}) as response:
        return json.load(response)


def scrape(url, key=ADMIN_KEY):
    """The metric families by name, as the parser reads them."""
    with request(f"{url}/metrics", key=key) as response:
        assert response.headers["Content-Type"] == OPENMETRICS
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families, family, sample, **labels):
    """The value of the one sample of `family` named `sample` with exactly these labels (others
    may have more, like `le`), or None."""
    found = [s.value for s in families[family].samples if s.name == sample and s.labels == labels]
    assert len(found) <= 1, found
    return found[0] if found else None


def test_function_counters_and_histograms_count_the_calls_made(server):
    url, metrics_url = server
    for title in ["one", "two", "three"]:
        assert call(url, "mutation", "chatSessions:create", {"userId": "py", "title": title})["status"] == "success"
    session = call(url, "mutation", "chatSessions:create", {"userId": "other", "title": "for the order"})["value"]
    order = call(url, "mutation", "workOrders:create", {"sessionId": session, "status": "draft"})["value"]
    failed = call(url, "mutation", "workOrders:updateStatus", {"workOrderId": order, "status": "succeeded"})
    assert failed["errorData"]["code"] == "InvalidTransition"
    for _ in range(2):
        assert len(call(url, "query", "chatSessions:list", {"userId": "py"})["value"]) == 3

    with pytest.raises(urllib.error.HTTPError) as refused:
        request(f"{url}/metrics", key=None)
    assert refused.value.code == 401
    assert json.load(refused.value)["code"] == "Unauthenticated"

    for families in [scrape(url), scrape(metrics_url, key=None)]:
        calls = families["jangar_function_calls"]
        assert calls.type == "counter"
        counted = {
            (s.labels["function"], s.labels["kind"], s.labels["outcome"]): s.value
            for s in calls.samples
            if s.name == "jangar_function_calls_total"
        }
        assert counted == {
            ("chatSessions:create", "mutation", "success"): 4,
            ("workOrders:create", "mutation", "success"): 1,
            ("workOrders:updateStatus", "mutation", "error"): 1,
            ("chatSessions:list", "query", "success"): 2,
        }
        errors = families["jangar_function_errors"]
        assert [(s.labels, s.value) for s in errors.samples if s.name == "jangar_function_errors_total"] == [
            ({"function": "workOrders:updateStatus", "kind": "mutation", "code": "InvalidTransition"}, 1)
        ]

        durations = families["jangar_function_duration_seconds"]
        assert (durations.type, durations.unit) == ("histogram", "seconds")
        for (function, kind, outcome), calls_made in counted.items():
            labels = {"function": function, "kind": kind, "outcome": outcome}
            assert value(families, durations.name, f"{durations.name}_count", **labels) == calls_made
            buckets = [s for s in durations.samples if s.name.endswith("_bucket") and s.labels.items() > labels.items()]
            counts = [s.value for s in buckets]
            assert counts == sorted(counts) and buckets[-1].labels["le"] == "+Inf" and counts[-1] == calls_made
            assert value(families, durations.name, f"{durations.name}_sum", **labels) >= 0

        # Six mutations reached the committer (the failed one too); some may have shared a group commit.
        committed = value(families, "jangar_mutations_committed", "jangar_mutations_committed_total")
        groups = value(families, "jangar_commit_groups", "jangar_commit_groups_total")
        assert committed == 6 and 1 <= groups <= 6
        assert value(families, "jangar_commit_group_mutations", "jangar_commit_group_mutations_count") == groups
        assert value(families, "jangar_commit_group_mutations", "jangar_commit_group_mutations_sum") == committed
        for histogram in ["jangar_commit_group_duration_seconds", "jangar_commit_fsync_duration_seconds"]:
            assert families[histogram].unit == "seconds"
            assert value(families, histogram, f"{histogram}_count") == groups
        assert value(families, "jangar_commit_groups_failed", "jangar_commit_groups_failed_total") == 0
        # Each group opens, reads its timestamp, writes and commits; only PostgreSQL is over a socket.
        statements = value(families, "jangar_commit_statements", "jangar_commit_statements_total")
        trips = value(families, "jangar_commit_round_trips", "jangar_commit_round_trips_total")
        assert statements >= 4 * groups and (0 < trips <= statements if ON_POSTGRES else trips == 0)
        with request(f"{url}/jangar/stats") as response:
            stats = json.load(response)
        assert stats["commitStatements"] == statements and stats["commitRoundTrips"] == trips
        assert stats["mutationsPerGroup"] == committed / groups
        assert 0 < stats["lockHoldMs"]["p50"] <= stats["lockHoldMs"]["p99"] and stats["lockHoldMs"]["groups"] == groups
        # The work order's session and the work order itself were written by this server, so the
        # mutations that read them find them in the committer's document cache.
        doc_hits = value(families, "jangar_document_cache_hits", "jangar_document_cache_hits_total")
        doc_misses = value(families, "jangar_document_cache_misses", "jangar_document_cache_misses_total")
        assert doc_hits >= 2
        assert (stats["documentCacheHits"], stats["documentCacheMisses"]) == (doc_hits, doc_misses)

        hits = value(families, "jangar_query_cache_hits", "jangar_query_cache_hits_total")
        misses = value(families, "jangar_query_cache_misses", "jangar_query_cache_misses_total")
        assert (hits, misses) == (1, 1)
        assert families["jangar_storage_size_bytes"].type == "gauge"
        assert value(families, "jangar_storage_size_bytes", "jangar_storage_size_bytes") > 0
        assert value(families, "jangar_storage_readers_max", "jangar_storage_readers_max") == 4
        assert value(families, "jangar_rate_limited_calls", "jangar_rate_limited_calls_total") == 0
        assert ("jangar_commit_feed_lag_seconds" in families) == ON_POSTGRES


def test_sync_gauges_and_re_runs_follow_a_subscription(server):
    url, metrics_url = server
    session = call(url, "mutation", "chatSessions:create", {"userId": "py", "title": "watched"})["value"]
    watcher = ConvexClient(url)
    watcher.set_admin_auth(ADMIN_KEY)
    subscription = watcher.subscribe("chatMessages:listBySession", {"sessionId": session})
    values = iter(subscription)
    assert next(values) == []
    before = scrape(metrics_url, key=None)
    assert value(before, "jangar_sync_connections", "jangar_sync_connections") == 1
    assert value(before, "jangar_sync_subscriptions", "jangar_sync_subscriptions") == 1

    call(url, "mutation", "chatMessages:append", {"sessionId": session, "role": "user", "content": "hi"})
    assert next(messages for messages in values if messages)[0]["content"] == "hi"
    after = scrape(metrics_url, key=None)
    grew = lambda name: value(after, name, f"{name}_total") - value(before, name, f"{name}_total")
    assert grew("jangar_sync_query_reruns") >= 1
    assert grew("jangar_sync_commits") >= 1
    runs = value(after, "jangar_function_calls", "jangar_function_calls_total",
                 function="chatMessages:listBySession", kind="query", outcome="success")
    assert runs >= 2, "the subscription's first run and its re-run are calls"
    subscription.unsubscribe()
