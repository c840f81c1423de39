"""The load generator of `harness load`: an embedding endpoint under open-loop and closed-loop load.

Open loop: requests leave on a Poisson schedule at the offered rate whatever the server does, and each latency is
taken from the request's *intended* send time, so that a queue in the server (or a client that fell behind) shows
in the figures instead of being hidden by a client that waits (coordinated omission). Closed loop: N workers, each
sending its next request when the previous answer arrives. Both run on a fresh event loop in a worker thread (so
they work where a loop already runs, as in Jupyter), one aiohttp session per point.

`client_capacity` measures, in this process, how many requests/s this client generates against `StubEndpoint` (a
trivial local server that answers at once): a point offered beyond 80% of it, or one where the client fell behind
its schedule, is marked client-limited: its latencies hold the client's delays too, an upper bound on the server's.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np

from harness.vocabulary.errors import HarnessError
from harness.vocabulary.timing import Latency
from harness.vocabulary.validation import StrictModel

T = TypeVar("T")
CAPACITY_SHARE = 0.8  # an offered rate beyond this share of the client's capacity is the client's figure
# The client fell behind its schedule when the p99 of (actual - intended send) exceeds both of these. Lag is part
# of every latency measured from the intended time; below a quarter of the p99 the figure is still the server's
# (a tenth marked points client-limited whenever a server sharing the client's 2 cores held both for 5 ms).
MAX_SEND_LAG_MS = 5.0
MAX_SEND_LAG_SHARE = 0.25
# Response headers in which servers state their own time (ms): TEI's x-total-time (x-inference-time is a part of it)
TIMING_HEADERS = ("x-total-time", "x-inference-time")


@dataclass(frozen=True)
class Target:
    url: str  # the full URL to POST to
    bodies: tuple[bytes, ...]  # JSON request bodies, sent in order and cycled
    rows_per_request: int
    headers: Mapping[str, str] = field(default_factory=dict)
    validate: Callable[[bytes], str | None] | None = None  # the error kind of a wrong 2xx answer, None when right


CLIENT_CAUSABLE_ERRORS = ("timeout", "client-cap")  # what a client that fell behind can cause itself


class LoadPoint(StrictModel):
    mode: Literal["open", "closed"]
    offered_rate: float | None  # requests/s asked for (open loop)
    concurrency: int | None  # workers (closed loop)
    rows_per_request: int
    warmup_s: float
    duration_s: float  # the measured window
    sent: int  # requests whose (intended) send time fell in the window
    completed: int  # of those, answered 2xx and valid
    achieved_rate: float  # valid answers received within the window / duration_s (requests/s)
    rows_per_s: float
    latency: Latency | None  # ms; open loop: from the intended send time
    service_latency: Latency | None  # ms, from the actual send (what a coordinated-omission client reports)
    send_lag_p99_ms: float  # p99 of (actual - intended send); 0 in closed loop
    errors: dict[str, int]  # http-NNN, timeout, connection, bad-response, client-cap (not sent: max_in_flight)
    server_timing_ms: Latency | None  # the server's own time per request, where its headers state it
    client_limited: bool
    note: str | None = None

    def server_errors(self) -> dict[str, int]:
        """The errors only the server can have caused: all of them, unless the client fell behind, when a timeout or
        an unsent request may be the client's own doing (a late read, a starved event loop)."""
        if not self.client_limited:
            return self.errors
        return {kind: n for kind, n in self.errors.items() if kind not in CLIENT_CAUSABLE_ERRORS}


def error_counts(errors: dict[str, int]) -> str:
    """'3 http-503, 2 timeout': a point's errors by kind, for messages and tables ('' when none)."""
    return ", ".join(f"{n} {kind}" for kind, n in sorted(errors.items()) if n)


@dataclass
class _Outcome:
    intended: float  # seconds from the start
    sent: float | None = None
    done: float | None = None
    error: str | None = None
    server_ms: float | None = None


def open_loop(target: Target, rate: float, *, duration_s: float, warmup_s: float = 1.0, timeout_s: float = 10.0,
              seed: int = 0, max_in_flight: int = 1024, capacity: float | None = None) -> LoadPoint:
    """Poisson arrivals at `rate` requests/s for warmup_s + duration_s; the window's requests are measured."""
    _check(target, duration_s=duration_s, warmup_s=warmup_s, timeout_s=timeout_s)
    if not rate > 0:
        raise HarnessError(f"rate {rate!r}: an offered rate is a positive number of requests/s, e.g. 10")
    if max_in_flight < 1:
        raise HarnessError(f"max_in_flight {max_in_flight!r}: give at least 1")
    rng = np.random.default_rng(seed)
    total = warmup_s + duration_s
    gaps = rng.exponential(1.0 / rate, size=int(rate * total * 1.5) + 16)
    times = np.cumsum(gaps)
    while times[-1] < total:  # rare: the draw fell short of the span
        times = np.concatenate([times, times[-1] + np.cumsum(rng.exponential(1.0 / rate, size=len(gaps)))])
    schedule = times[times < total].tolist()
    outcomes = _run(_open(target, schedule, timeout_s=timeout_s, max_in_flight=max_in_flight))
    point = _point(outcomes, target, "open", warmup_s, duration_s, offered=rate)
    reasons = []
    if capacity is not None and rate > CAPACITY_SHARE * capacity:
        reasons.append(f"{rate:g} req/s offered is beyond {CAPACITY_SHARE:.0%} of this client's capacity "
                       f"({capacity:.0f} req/s)")
    p99 = point.latency.p99 if point.latency is not None else 0.0
    if point.send_lag_p99_ms > max(MAX_SEND_LAG_MS, MAX_SEND_LAG_SHARE * p99):
        reasons.append(f"the client sent late (send lag p99 {point.send_lag_p99_ms:.1f} ms, more than "
                       f"{MAX_SEND_LAG_MS:g} ms and {MAX_SEND_LAG_SHARE:.0%} of the p99 {p99:.1f} ms)")
    if reasons:
        return point.model_copy(update={"client_limited": True, "note": "; ".join(reasons)})
    if point.errors.get("client-cap"):  # the server's doing: its answers fell behind until the cap was reached
        return point.model_copy(update={"note": f"overloaded: {point.errors['client-cap']} requests were not sent "
                                                f"because {max_in_flight} were still waiting for answers (the "
                                                "sent ones' latencies understate the queue)"})
    return point


def closed_loop(target: Target, concurrency: int, *, duration_s: float, warmup_s: float = 1.0,
                timeout_s: float = 10.0) -> LoadPoint:
    """`concurrency` workers sending back to back for warmup_s + duration_s; requests sent in the window count."""
    _check(target, duration_s=duration_s, warmup_s=warmup_s, timeout_s=timeout_s)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise HarnessError(f"concurrency {concurrency!r}: give a whole number of workers, 1 or more")
    outcomes = _run(_closed(target, concurrency, total=warmup_s + duration_s, timeout_s=timeout_s))
    return _point(outcomes, target, "closed", warmup_s, duration_s, concurrency=concurrency)


def client_capacity(*, rows_per_request: int = 1, dim: int = 384, duration_s: float = 2.0,
                    concurrency: int = 64) -> float:
    """Requests/s this client reaches in this process against a `StubEndpoint` that answers at once, with answers
    as large as an embedding server's (`rows_per_request` vectors of `dim`)."""
    with StubEndpoint(dim=dim) as stub:
        body = json.dumps({"input": ["capacity probe"] * rows_per_request, "model": "stub"}).encode()
        target = Target(url=f"{stub.url}/embeddings", bodies=(body,), rows_per_request=rows_per_request,
                        validate=lambda answer: None if json.loads(answer) else "bad-response")
        return closed_loop(target, concurrency, duration_s=duration_s, warmup_s=0.5).achieved_rate


def _check(target: Target, *, duration_s: float, warmup_s: float, timeout_s: float) -> None:
    if not target.bodies:
        raise HarnessError("no request bodies to send: the dataset gave no texts")
    if not duration_s > 0:
        raise HarnessError(f"duration {duration_s!r}: give a positive number of seconds, e.g. 30")
    if not warmup_s >= 0:
        raise HarnessError(f"warmup {warmup_s!r}: give 0 or more seconds")
    if not timeout_s > 0:
        raise HarnessError(f"timeout {timeout_s!r}: give a positive number of seconds")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on a fresh event loop in a worker thread and return its result (or raise its exception)."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=work, name="harness-load", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


async def _send(session: Any, target: Target, body: bytes, outcome: _Outcome, clock: Callable[[], float],
                timeout: Any) -> None:
    import aiohttp

    outcome.sent = clock()
    try:
        async with session.post(target.url, data=body, headers=target.headers, timeout=timeout) as answer:
            raw = await answer.read()
            outcome.done = clock()
            if answer.status >= 300:
                outcome.error = f"http-{answer.status}"
            elif target.validate is not None:
                outcome.error = target.validate(raw)
            outcome.server_ms = _server_ms(answer.headers)
    except asyncio.TimeoutError:
        outcome.error = "timeout"
    except (aiohttp.ClientError, OSError):
        outcome.error = "connection"
    if outcome.error is not None:
        outcome.done = None


def _session(limit: int) -> Any:
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit, force_close=False),
                                 headers={"Content-Type": "application/json"})


async def _open(target: Target, schedule: list[float], *, timeout_s: float, max_in_flight: int) -> list[_Outcome]:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    outcomes: list[_Outcome] = []
    tasks: set[asyncio.Task[None]] = set()
    async with _session(max_in_flight) as session:
        start = time.perf_counter()

        def clock() -> float:
            return time.perf_counter() - start

        for i, due in enumerate(schedule):
            wait = due - clock()
            if wait > 0:
                await asyncio.sleep(wait)
            outcome = _Outcome(intended=due)
            outcomes.append(outcome)
            if len(tasks) >= max_in_flight:
                outcome.error = "client-cap"
                continue
            task = asyncio.ensure_future(_send(session, target, target.bodies[i % len(target.bodies)], outcome,
                                               clock, timeout))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s + 5)
    return outcomes


async def _closed(target: Target, concurrency: int, *, total: float, timeout_s: float) -> list[_Outcome]:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    outcomes: list[_Outcome] = []
    async with _session(concurrency) as session:
        start = time.perf_counter()

        def clock() -> float:
            return time.perf_counter() - start

        async def worker(offset: int) -> None:
            i = offset
            while clock() < total:
                outcome = _Outcome(intended=clock())
                outcomes.append(outcome)
                await _send(session, target, target.bodies[i % len(target.bodies)], outcome, clock, timeout)
                i += concurrency

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return outcomes


def _server_ms(headers: Mapping[str, str]) -> float | None:
    for name in TIMING_HEADERS:
        value = headers.get(name)
        if value is not None:
            try:
                return float(value)
            except ValueError:
                pass
    timing = headers.get("Server-Timing")
    if timing:
        total = 0.0
        for metric in timing.split(","):
            for part in metric.split(";"):
                key, _, value = part.strip().partition("=")
                if key == "dur":
                    try:
                        total += float(value)
                    except ValueError:
                        pass
        return total
    return None


def _point(outcomes: list[_Outcome], target: Target, mode: Literal["open", "closed"], warmup_s: float,
           duration_s: float, *, offered: float | None = None, concurrency: int | None = None) -> LoadPoint:
    end = warmup_s + duration_s
    window = [o for o in outcomes if warmup_s <= o.intended < end]
    answered = sum(1 for o in outcomes if o.error is None and o.done is not None and warmup_s <= o.done < end)
    done = [o for o in window if o.error is None and o.done is not None]
    errors = Counter(o.error or "timeout" for o in window if o.error is not None or o.done is None)
    latency = [(o.done - o.intended) * 1000 for o in done if o.done is not None]
    service = [(o.done - o.sent) * 1000 for o in done if o.done is not None and o.sent is not None]
    lag = [(o.sent - o.intended) * 1000 for o in window if o.sent is not None]
    server = [o.server_ms for o in done if o.server_ms is not None]
    return LoadPoint(mode=mode, offered_rate=offered, concurrency=concurrency,
                     rows_per_request=target.rows_per_request, warmup_s=warmup_s, duration_s=duration_s,
                     sent=len(window), completed=len(done), achieved_rate=answered / duration_s,
                     rows_per_s=answered * target.rows_per_request / duration_s,
                     latency=Latency.from_values(latency) if latency else None,
                     service_latency=Latency.from_values(service) if service else None,
                     send_lag_p99_ms=float(np.percentile(lag, 99)) if lag and mode == "open" else 0.0,
                     errors=dict(sorted(errors.items())),
                     server_timing_ms=Latency.from_values(server) if server else None, client_limited=False)


class StubEndpoint:
    """A real aiohttp server on 127.0.0.1 (a free port, its own thread and loop) answering POST /embeddings (OpenAI
    shape) and POST /embed (TEI shape) with constant vectors of `dim`: the trivial endpoint `client_capacity`
    measures against, and a server whose service time (`delay_s`; `serial`: one request at a time), failures
    (every `fail_every`-th answered `fail_status`) and headers tests set."""

    def __init__(self, *, dim: int = 384, delay_s: float = 0.0, serial: bool = False, fail_every: int = 0,
                 fail_status: int = 503, headers: Mapping[str, str] | None = None):
        self.dim, self.delay_s, self.serial = dim, delay_s, serial
        self.fail_every, self.fail_status = fail_every, fail_status
        self.extra_headers = dict(headers or {})
        self.requests = 0
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="harness-stub-endpoint", daemon=True)
        self._runner: Any = None

    def _serve(self) -> None:
        from aiohttp import web

        lock = asyncio.Lock()
        vector = [0.125] * self.dim

        async def answer(request: web.Request, tei: bool) -> web.Response:
            body = await request.json()
            self.requests += 1
            n = len(body.get("inputs" if tei else "input", []) or [])
            if self.fail_every and self.requests % self.fail_every == 0:
                return web.json_response({"error": "failing on purpose"}, status=self.fail_status)
            if self.delay_s:
                if self.serial:
                    async with lock:
                        await asyncio.sleep(self.delay_s)
                else:
                    await asyncio.sleep(self.delay_s)
            payload: Any = ([vector] * n if tei else
                            {"object": "list", "model": "stub", "usage": {"prompt_tokens": n, "total_tokens": n},
                             "data": [{"object": "embedding", "index": i, "embedding": vector} for i in range(n)]})
            return web.json_response(payload, headers=self.extra_headers)

        async def openai(request: web.Request) -> web.Response:
            return await answer(request, tei=False)

        async def tei(request: web.Request) -> web.Response:
            return await answer(request, tei=True)

        async def start() -> None:
            app = web.Application()
            app.router.add_post("/embeddings", openai)
            app.router.add_post("/embed", tei)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            port = self._runner.addresses[0][1]
            self.url = f"http://127.0.0.1:{port}"

        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def __enter__(self) -> StubEndpoint:
        self._thread.start()
        if not self._ready.wait(10):
            raise HarnessError("the local stub endpoint did not start within 10 s")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
