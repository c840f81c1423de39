"""The load generator and `harness load` / `harness check --serving`, against real local servers: the stub endpoint
(its service time, queueing and failures set by the test) and Infinity (a real embedding server)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.api import check_serving, load_profile, report
from harness.encode.load import StubEndpoint, Target, client_capacity, closed_loop, open_loop
from harness.scoring.records import load
from harness.vocabulary.errors import HarnessError
from tests.servers import InfinityServer, StubProcess, free_port

REPO = Path(__file__).resolve().parent.parent
BODY = json.dumps({"input": ["a query"], "model": "stub"}).encode()


def target(stub: StubEndpoint, **kw) -> Target:
    return Target(url=f"{stub.url}/embeddings", bodies=(BODY,), rows_per_request=1, **kw)


def test_open_loop_sends_on_a_poisson_schedule():
    with StubEndpoint() as stub:
        point = open_loop(target(stub), 200, duration_s=2.0, warmup_s=0.5, seed=1)
    # Poisson(400): 99.9% of draws lie within about 3.3 sd (20) of the mean
    assert abs(point.sent - 400) < 3.3 * math.sqrt(400), point.sent
    assert point.completed == point.sent and point.errors == {}
    assert stub.requests > point.sent  # the warm-up's requests were sent too, and not measured
    assert point.latency is not None and point.latency.n == point.completed


def test_open_loop_latency_counts_the_queue_a_closed_loop_hides():
    """A server that answers one request at a time in 20 ms (50 req/s) offered 100 req/s: measured from the
    intended send time the queue grows through the window; a closed loop of one client sees 20 ms."""
    with StubEndpoint(delay_s=0.02, serial=True) as stub:
        opened = open_loop(target(stub), 100, duration_s=2.0, warmup_s=0.5)
        closed = closed_loop(target(stub), 1, duration_s=2.0, warmup_s=0.5)
    assert opened.latency is not None and opened.latency.p99 > 800  # ~50 queued/s for 2.5 s: ~1.2 s behind at the end
    assert opened.achieved_rate < 60  # the server's capacity, not the offered rate
    assert closed.latency is not None and 18 < closed.latency.p50 < 40
    assert closed.achieved_rate == pytest.approx(1 / 0.021, rel=0.3)


def test_closed_loop_throughput_scales_with_workers_until_the_server_does_not():
    with StubEndpoint(delay_s=0.02) as stub:  # not serial: requests overlap
        one = closed_loop(target(stub), 1, duration_s=1.5, warmup_s=0.3)
        four = closed_loop(target(stub), 4, duration_s=1.5, warmup_s=0.3)
    assert four.achieved_rate == pytest.approx(4 * one.achieved_rate, rel=0.3)


def test_errors_are_counted_by_kind():
    with StubEndpoint(fail_every=3) as stub:
        point = closed_loop(target(stub), 1, duration_s=1.0, warmup_s=0.0)
    assert abs(point.errors["http-503"] - point.sent / 3) <= 2
    assert point.completed == point.sent - point.errors["http-503"]
    with StubEndpoint(delay_s=0.3) as stub:
        point = open_loop(target(stub), 20, duration_s=0.5, warmup_s=0.0, timeout_s=0.05)
    assert point.completed == 0 and point.errors == {"timeout": point.sent} and point.latency is None
    closed_port = Target(url=f"http://127.0.0.1:{free_port()}/embeddings", bodies=(BODY,), rows_per_request=1)
    point = open_loop(closed_port, 20, duration_s=0.5, warmup_s=0.0)
    assert point.errors == {"connection": point.sent} and point.sent > 0


def test_a_wrong_answer_and_the_servers_own_timing_are_read():
    with StubEndpoint(headers={"x-total-time": "7"}) as stub:
        wrong = closed_loop(target(stub, validate=lambda body: "bad-response"), 2, duration_s=0.5, warmup_s=0.0)
        timed = closed_loop(target(stub), 1, duration_s=0.5, warmup_s=0.0)
    assert wrong.completed == 0 and wrong.errors == {"bad-response": wrong.sent}
    assert timed.server_timing_ms is not None and timed.server_timing_ms.p50 == 7


def test_a_point_beyond_the_clients_capacity_is_marked_not_the_servers():
    capacity = client_capacity(duration_s=1.0)
    assert capacity > 200
    with StubEndpoint() as stub:
        point = open_loop(target(stub), 150, duration_s=0.5, warmup_s=0.0, capacity=100)
        capped = open_loop(target(stub), 400, duration_s=0.5, warmup_s=0.0, max_in_flight=1)
    assert point.client_limited and "150 req/s" in point.note and "(100 req/s)" in point.note
    # A full in-flight cap is the server falling behind, not the client: counted as an error, not client-limited.
    assert not capped.client_limited and capped.errors.get("client-cap", 0) > 0 and "overloaded" in capped.note


@pytest.mark.parametrize("call, message", [
    (lambda t: open_loop(t, 0, duration_s=1), "rate 0"),
    (lambda t: open_loop(t, 5, duration_s=0), "duration 0"),
    (lambda t: closed_loop(t, 0, duration_s=1), "concurrency 0"),
    (lambda t: open_loop(Target(url=t.url, bodies=(), rows_per_request=1), 5, duration_s=1), "no request bodies"),
])
def test_bad_parameters_are_named(call, message):
    with pytest.raises(HarnessError, match=message):
        call(Target(url="http://127.0.0.1:1/embeddings", bodies=(BODY,), rows_per_request=1))


# ------------------------------------------------------------------ harness load and the serving gate


def served_suite(tmp_path: Path, url: str, **endpoint) -> Path:
    raw = {"name": "served", "datasets": [{"name": "noveleval", "path": str(REPO / "data" / "noveleval")}],
           "encoders": [{"name": "served", "engine": "http", "endpoint": {"url": url, **endpoint}}],
           "metrics": ["nDCG@10"], "top_k": 10}
    path = tmp_path / f"suite-{free_port()}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def stub_record(tmp_path: Path, *, delay_s: float, rates=(20, 100), output="serving"):
    with StubProcess(delay_s=delay_s, serial=True) as stub:
        (written,) = load_profile(served_suite(tmp_path, stub.url, served_model="stub"), rates=rates,
                                  concurrency=(1, 2), duration=6.0, warmup=1.0, slo_p99_ms=100,
                                  output=tmp_path / output)
    return written


def synthetic_point(rate, p99_ms, errors=None, limited=False, n=101):
    """An open-loop point whose p99 is p99_ms: 2% of its n latencies at p99_ms, the rest at half of it."""
    from harness.encode.load import LoadPoint
    from harness.vocabulary.timing import Latency

    latency = Latency.from_values([p99_ms * 0.5] * (n - n // 50) + [p99_ms] * (n // 50))
    return LoadPoint(mode="open", offered_rate=rate, concurrency=None, rows_per_request=1, warmup_s=0,
                     duration_s=10, sent=n, completed=n, achieved_rate=rate, rows_per_s=rate, latency=latency,
                     service_latency=latency, send_lag_p99_ms=6.0 if limited else 0.0, errors=errors or {},
                     server_timing_ms=None, client_limited=limited, note="sent late" if limited else None)


def test_the_saturation_rate_stops_at_the_first_rate_that_missed_the_slo():
    """20 req/s missed a 100 ms SLO, 40 met it again (a server whose batching pays off at higher load), 80 erred:
    the saturation rate is 10, not 40, and 40 is named as the rate where p99 came back. A client-limited point
    counts where it met the SLO (the client's delays only add to a latency) and stops the claim where it did not."""
    from harness.analysis.serving import resumed_note, resumed_rates, saturation_rate

    point = synthetic_point
    points = [point(40, 90), point(5, 30), point(10, 60), point(20, 150), point(80, 50, {"http-503": 1})]
    assert [p.latency.p99 for p in points[:4]] == pytest.approx([90, 30, 60, 150])
    assert saturation_rate(points, 100) == 10 and resumed_rates(points, 100) == [40]
    assert "again at 40 req/s after 20 req/s missed it (p99 150.0 ms > 100 ms)" in resumed_note(points, 100)
    assert saturation_rate(points, 200) == 40 and resumed_rates(points, 200) == [] and not resumed_note(points, 200)
    assert saturation_rate(points, 20) is None
    assert saturation_rate([point(5, 10, limited=True), point(10, 20, limited=True)], 100) == 10
    stopped = [point(5, 10), point(10, 150, limited=True), point(20, 30)]
    assert saturation_rate(stopped, 100) == 5 and "the client fell behind there" in resumed_note(stopped, 100)


def test_a_client_limited_point_supports_only_the_verdict_its_upper_bound_allows():
    """A client-limited point's p99 bounds its server's from above. Base 10 ms, new 50 ms at 100 req/s (500
    requests each): the FAIL stands when only the baseline was client-limited and is withheld (SKIP) when the new
    one was; a pass stands when only the new one was. The saturation FAIL (p99 far above the SLO at the baseline's
    rate) is withheld when the new point there was client-limited."""
    from harness.analysis.serving import serving_results
    from harness.input.suite import SpeedGate

    def record(p99_ms, limited=False):
        return serving_record(synthetic_point(100, p99_ms, limited=limited, n=500))

    def verdicts(base, new):
        return [(r.metric, r.status) for r in serving_results(base, new, gate=SpeedGate())]

    fast, slow = record(10), record(50)
    assert verdicts(fast, slow) == [("p99 ms at 100 req/s", "FAIL"), ("saturation req/s", "FAIL")]
    assert verdicts(record(10, limited=True), slow) == [("p99 ms at 100 req/s", "FAIL"), ("saturation req/s", "FAIL")]
    withheld = serving_results(fast, record(50, limited=True), gate=SpeedGate())
    assert [r.status for r in withheld] == ["SKIP", "SKIP"]
    assert "the new client could not keep to its schedule (sent late)" in withheld[0].message
    assert verdicts(fast, record(10, limited=True))[0] == ("p99 ms at 100 req/s", "OK")
    assert verdicts(record(10, limited=True), fast)[0] == ("p99 ms at 100 req/s", "SKIP")
    assert verdicts(record(10, limited=True), record(50, limited=True))[0] == ("p99 ms at 100 req/s", "SKIP")


def serving_record(point, slo_p99_ms=20):
    """The shipped serving record with `point` as its only point, its saturation rate recomputed."""
    from harness.analysis.serving import saturation_rate

    (shipped,) = (REPO / "results" / "serving-example" / "serving").glob("*/record.json")
    return load(shipped).model_copy(update={"points": [point], "slo_p99_ms": slo_p99_ms,
                                            "saturation_rps": saturation_rate([point], slo_p99_ms)})


def test_only_errors_the_server_caused_fail_a_point_whose_client_fell_behind():
    """Base and new both 10 ms at 100 req/s. HTTP errors are the server's however late its client was: FAIL, both
    points client-limited or not. Timeouts (and unsent requests) a client that fell behind can cause itself: FAIL
    when the new client kept to its schedule, SKIP when it did not. The saturation gate draws the same line."""
    from harness.analysis.serving import serving_results
    from harness.input.suite import SpeedGate

    def verdicts(base, new):
        return [(r.status, r.message) for r in serving_results(base, new, gate=SpeedGate())]

    def new(errors, limited):
        return serving_record(synthetic_point(100, 10, errors, limited=limited, n=500))

    kept, late = serving_record(synthetic_point(100, 10, n=500)), serving_record(synthetic_point(100, 10, limited=True,
                                                                                                  n=500))
    assert kept.saturation_rps == 100 and late.saturation_rps == 100
    for base in (kept, late):
        for limited in (False, True):
            (status, message), (sat_status, sat_message) = verdicts(base, new({"http-503": 3, "timeout": 2}, limited))
            assert status == "FAIL" and sat_status == "FAIL", (base is late, limited)
            shown = "3 http-503" if limited else "3 http-503, 2 timeout"
            assert f"failed {5 - 2 * limited} of 500 requests at 100 req/s ({shown})" in message
            assert f"it fails requests there ({shown})" in sat_message
        assert [v[0] for v in verdicts(base, new({"timeout": 2}, limited=False))] == ["FAIL", "FAIL"]
        (status, message), (sat_status, sat_message) = verdicts(base, new({"timeout": 2, "client-cap": 1}, True))
        assert (status, sat_status) == ("SKIP", "SKIP"), (message, sat_message)
        assert "could not keep to its schedule at 100 req/s (sent late) and 1 client-cap, 2 timeout" in message
        assert "and 1 client-cap, 2 timeout (the client may have caused those itself)" in sat_message


def test_the_serving_gate_passes_the_same_server_and_fails_a_slower_one(tmp_path):
    """Base: 2 ms per request, one at a time (500 req/s); new: 8 ms (125 req/s). At 100 req/s offered (400 timed
    requests: enough to bound a p99) the new server queues and its p99 is several times the base's. Same-speed
    records pass."""
    base, base_path = stub_record(tmp_path, delay_s=0.002, output="base")
    again, again_path = stub_record(tmp_path, delay_s=0.002, output="again")
    slow, slow_path = stub_record(tmp_path, delay_s=0.008, output="slow")
    assert base.saturation_rps == 100 and base.workload == "query" and base.texts == 21 and base.server_on_client_host
    assert [p.offered_rate for p in base.open_loop()] == [20, 100] and len(base.closed_loop()) == 2
    assert load(base_path).kind == "serving"

    same = check_serving([base_path, again_path])
    assert not same.failed, same.to_table()
    worse = check_serving([base_path, slow_path], json=tmp_path / "gate.json")
    statuses = {r.metric: r.status for r in worse.results}
    assert statuses["p99 ms at 100 req/s"] == "FAIL", worse.to_table()
    assert json.loads((tmp_path / "gate.json").read_text())["passed"] is False
    cli = subprocess.run([sys.executable, "-m", "harness.cli", "check", "--serving", str(base_path), str(slow_path),
                          "--rate", "100"], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 1 and "p99 ms at 100 req/s" in cli.stdout
    with pytest.raises(HarnessError, match="no open-loop point at 25 req/s; rates both have: 20, 100"):
        check_serving([base_path, slow_path], rate=25)

    out = report([tmp_path / "base", tmp_path / "slow"], output=tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Serving" in text and "saturates at 100 req/s" in text
    assert list((tmp_path / "report" / "plots").glob("serving-latency--*.png"))
    assert list((tmp_path / "report" / "plots").glob("serving-throughput--*.png"))
    assert out is not None


def test_load_needs_a_served_encoder_and_a_load(tmp_path):
    with pytest.raises(HarnessError, match="give the load to apply"):
        load_profile(served_suite(tmp_path, "http://127.0.0.1:1"), output=tmp_path / "out")
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({"name": "p", "datasets": [{"name": "n", "path": str(REPO / "data" / "noveleval")}],
                                     "encoders": [{"name": "e", "model": "bundled:all-MiniLM-L6-v2"}]}))
    with pytest.raises(HarnessError, match="no encoder with engine http"):
        load_profile(plain, rates=[5], output=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_infinity_under_load_has_a_hockey_stick_and_a_saturation_rate(tmp_path):
    """The real server: latency at the highest rate far above the lowest (the queue), the mean over the curve
    rising, and a saturation rate below the highest rate offered. The highest rate is 1.4 x what 64 clients got
    through one at a time (a fixed rate was sustained on one CPU and not on another): beyond the server's capacity
    on any host, and near enough to it that the queue stays within the in-flight cap and the timeout."""
    from harness.encode.models import bundled_minilm_path

    with InfinityServer(bundled_minilm_path()) as server:
        (probe, _), = load_profile(served_suite(tmp_path, server.url), rates=(5,), concurrency=(64,), duration=2.0,
                                   warmup=0.5, slo_p99_ms=150, output=tmp_path / "probe")
        top = round(1.4 * probe.closed_loop()[0].achieved_rate)
        (record, _), = load_profile(served_suite(tmp_path, server.url), rates=(5, 20, top), concurrency=(1, 4),
                                    duration=4.0, warmup=1.0, slo_p99_ms=150, output=tmp_path / "serving")
    opened = record.open_loop()
    p50s = [p.latency.p50 for p in opened]
    assert p50s[-1] > 3 * p50s[0], p50s
    assert record.saturation_rps is not None and record.saturation_rps < top
    assert all(p.errors == {} for p in opened), [p.errors for p in opened]
    closed = record.closed_loop()
    assert closed[1].latency.p50 > closed[0].latency.p50  # four clients queue behind each other
    assert record.server.server_version == "0.0.78" and record.client_capacity_rps > top
