"""Real HTTP servers for the endpoint tests (and benchmarks/serving.py), on 127.0.0.1, started and stopped here.

`InfinityServer`: the Infinity embedding server from PyPI, in its own virtualenv (`./scripts/infinity` installs it
into .cache/infinity/venv; $HARNESS_INFINITY may point at another `infinity_emb`). `ScriptedServer`: a small aiohttp
server whose answers a test scripts, for faults a real server cannot be made to show on cue (a 503 storm, NaN,
a dimension that changes mid-run, an error body that repeats the request's key). `StubProcess`: the load
generator's trivial endpoint in a child process.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INFINITY = Path(os.environ.get("HARNESS_INFINITY", REPO / ".cache" / "infinity" / "venv" / "bin" / "infinity_emb"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_infinity() -> Path:
    """The infinity_emb executable; a skip where it is not installed, a failure where CI said it must be."""
    if INFINITY.exists():
        return INFINITY
    message = f"Infinity is not installed at {INFINITY}: run ./scripts/infinity"
    if os.environ.get("HARNESS_REQUIRE_INFINITY"):
        pytest.fail(message)
    pytest.skip(message)


class InfinityServer:
    """`infinity_emb v2` serving a local model folder offline on CPU, on 127.0.0.1:`port`."""

    def __init__(self, model: Path, *, port: int | None = None, args: tuple[str, ...] = (), log: Path | None = None):
        self.model, self.port, self.args = model, port or free_port(), args
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 180.0) -> InfinityServer:
        executable = require_infinity()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"}
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [str(executable), "v2", "--model-id", str(self.model), "--engine", "torch", "--device", "cpu",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning", *self.args],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Infinity exited with {self.process.returncode} before it was ready"
                                   + (f"; log: {self.log}" if self.log else ""))
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"Infinity did not answer {self.url}/health within {timeout_s:.0f} s")

    def kill(self) -> None:
        """SIGKILL, as a crashed server: no goodbye to open connections."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> InfinityServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def model_without_normalize(source: Path, folder: Path) -> Path:
    """A copy of a sentence-transformers folder with its Normalize module left out: unnormalised vectors."""
    shutil.copytree(source, folder)
    modules = json.loads((folder / "modules.json").read_text())
    (folder / "modules.json").write_text(json.dumps([m for m in modules if not m["type"].endswith("Normalize")]))
    return folder


def model_with_cls_pooling(source: Path, folder: Path) -> Path:
    """A copy of a mean-pooling sentence-transformers folder that pools the [CLS] token instead: a server started on
    it is a server whose pooling differs from the model's."""
    shutil.copytree(source, folder)
    config_path = folder / "1_Pooling" / "config.json"
    config = json.loads(config_path.read_text())
    config.update({key: False for key in config if key.startswith("pooling_mode_")})
    config["pooling_mode_cls_token"] = True
    config_path.write_text(json.dumps(config))
    return folder


Handler = Callable[[int, dict], "tuple[int, object] | tuple[int, object, dict[str, str]]"]


class ScriptedServer:
    """An embeddings server on 127.0.0.1 whose answer to the n-th POST (from 0) is `handler(n, request_json)` ->
    (status, JSON body[, headers]). OpenAI shape: POST /embeddings, GET /models lists one model. `tei=...` (the
    JSON of GET /info): TEI's shape, POST /embed."""

    def __init__(self, handler: Handler, *, model: str = "scripted", tei: dict | None = None):
        self.handler, self.model, self.tei = handler, model, tei
        self.posts = 0
        self.requests: list[dict] = []
        self.headers_seen: list[dict[str, str]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        from aiohttp import web

        async def models(request: web.Request) -> web.Response:
            return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})

        async def embeddings(request: web.Request) -> web.Response:
            body = await request.json()
            n, self.posts = self.posts, self.posts + 1
            self.requests.append(body)
            self.headers_seen.append(dict(request.headers))
            answer = self.handler(n, body)
            status, payload, headers = (*answer, {}) if len(answer) == 2 else answer
            return web.json_response(payload, status=status, headers=headers)

        async def info(request: web.Request) -> web.Response:
            return web.json_response(self.tei)

        app = web.Application()
        if self.tei is not None:
            app.router.add_get("/info", info)
            app.router.add_post("/embed", embeddings)
        else:
            app.router.add_get("/models", models)
            app.router.add_post("/embeddings", embeddings)
        runner = web.AppRunner(app)
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class StubProcess:
    """`harness.encode.load.StubEndpoint` in a child process, so that its loop does not share this process's GIL
    with the client under test (in one process the client's send lag reaches the GIL's 5 ms switch interval and
    marks points client-limited at random)."""

    def __init__(self, *, delay_s: float = 0.0, serial: bool = False):
        self.delay_s, self.serial = delay_s, serial
        self.url = ""
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> StubProcess:
        code = ("import sys\nfrom harness.encode.load import StubEndpoint\n"
                f"with StubEndpoint(delay_s={self.delay_s!r}, serial={self.serial!r}) as stub:\n"
                "    print(stub.url, flush=True)\n    sys.stdin.read()\n")
        self._process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
        assert self._process.stdout is not None
        self.url = self._process.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), f"the stub process did not start: {self.url!r}"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(10)


def vectors_answer(texts: list[str], *, dim: int = 8, value: float | None = None) -> dict:
    """An OpenAI-shaped answer: one vector per text, derived from the text (so that rankings are not all ties)."""
    data = []
    for i, text in enumerate(texts):
        seed = sum(map(ord, text)) % 97
        vector = [value if value is not None else ((seed * (j + 3)) % 17) / 17 + 0.01 for j in range(dim)]
        data.append({"object": "embedding", "index": i, "embedding": vector})
    return {"object": "list", "data": data, "model": "scripted", "usage": {"prompt_tokens": 3 * len(texts)}}
