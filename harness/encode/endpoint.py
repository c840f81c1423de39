"""`engine: http`: texts encoded by an embedding server (Infinity, vLLM, TEI, a hosted API) over its HTTP API.

`Endpoint` is the client: it opens the server (what it serves, its version, its vectors' dimension, a digest of
the vectors it gives a fixed probe, so that another model behind the same name is another cache key), then sends
texts in batches with `concurrency` requests in flight, retrying 429/502/503/504, timeouts and dropped
connections a bounded number of times with exponential backoff (or the server's Retry-After) and counting each
retry. Every answer is checked: one vector per text, in order, all of the server's dimension, all finite; an error
names the endpoint and the request. An API key is read from the environment variable the suite names, sent as a
bearer token, and replaced by `***` in every message.

`EndpointEngine` is that client as an engine of `harness.encode.models.Encoder`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numpy as np

from harness.encode.engines import EncodeResult
from harness.encode.settings import EndpointUsage, ServerInfo
from harness.input.endpoint import EndpointSpec
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.validation import clip

T = TypeVar("T")
RETRY_STATUSES = frozenset({429, 502, 503, 504})
PROBE_TEXTS = ("The quick brown fox jumps over the lazy dog.", "what is dense passage retrieval")
MAX_RETRY_WAIT_S = 30.0  # a Retry-After longer than this is waited only this long
OPEN_TIMEOUT_S = 30.0


class Endpoint:
    """The client of one embedding server. `open()` before `embed()`; `close()` when done (also at exit)."""

    def __init__(self, spec: EndpointSpec, *, where: str):
        self.spec, self.where = spec, where
        self._key = _api_key(spec, where)
        self.headers = {"Content-Type": "application/json"}
        if self._key:
            self.headers["Authorization"] = f"Bearer {self._key}"
        self.embed_url = f"{spec.url}/embeddings" if spec.api == "openai" else f"{spec.url}/embed"
        self.server: ServerInfo | None = None
        self._requests = self._texts = 0
        self._retries: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="harness-endpoint", daemon=True)
        self._thread.start()
        self._session: Any = None

    # ------------------------------------------------------------------ public

    def open(self) -> ServerInfo:
        """Ask the server what it serves and encode the probe texts: an unreachable server or an answer of another
        shape is a HarnessError naming the URL and what was expected, before anything is encoded."""
        if self.server is None:
            self.server = self._run(self._open())
        return self.server

    def embed(self, texts: Sequence[str], *, batch_size: int,
              progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, int | None]:
        """(float32 vectors [n, dim] in input order, prompt tokens the server counted or None where it did not say)."""
        server = self.open()
        if not texts:
            return np.zeros((0, server.dimension), dtype=np.float32), 0
        return self._run(self._embed_all(list(texts), batch_size, progress))

    def usage(self) -> EndpointUsage:
        with self._lock:
            retries = dict(sorted(self._retries.items()))
            return EndpointUsage(requests=self._requests, texts=self._texts, retries=retries)

    def redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def close(self) -> None:
        if self._loop.is_closed():
            return
        if self._session is not None:
            asyncio.run_coroutine_threadsafe(self._session.close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __del__(self) -> None:  # a dropped endpoint leaves no thread behind
        try:
            self.close()
        except Exception:
            pass

    # ------------------------------------------------------------------ the event loop's side

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _error(self, message: str) -> HarnessError:
        return HarnessError(self.redact(f"{self.where}: {message}"))

    async def _session_(self) -> Any:
        if self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.spec.concurrency))
        return self._session

    async def _open(self) -> ServerInfo:
        spec = self.spec
        about = await self._about()
        served = about.pop("served_model")
        vectors, _ = await self._embed_batch(list(PROBE_TEXTS), what="the probe request (2 texts)", dimension=None,
                                             served=served)
        digest = hashlib.sha256(np.round(vectors.astype(np.float64) * 10).astype(np.int64).tobytes()).hexdigest()
        return ServerInfo(url=spec.url, api=spec.api, served_model=served, dimension=int(vectors.shape[1]),
                          normalize=spec.normalize, probe_digest=digest, **about)

    async def _about(self) -> dict[str, Any]:
        """The served model, the models listed, the server's name and version (what each API offers)."""
        spec = self.spec
        if spec.api == "tei":
            info = await self._get_json(f"{spec.url}/info", expected="TEI's /info (model_id, version)")
            if not isinstance(info, dict) or not isinstance(info.get("model_id"), str):
                raise self._error(f"{spec.url}/info did not answer as text-embeddings-inference does (a JSON object "
                                  "with model_id); is this a TEI server? For an OpenAI-compatible one, write "
                                  "api: openai")
            served = spec.served_model or info["model_id"]
            limit = info.get("max_input_length")
            return {"served_model": served, "models": [info["model_id"]], "server": "text-embeddings-inference",
                    "server_version": _text(info.get("version")), "model_sha": _text(info.get("model_sha")),
                    "max_input_length": limit if isinstance(limit, int) else None}
        listed = await self._get_json(f"{spec.url}/models", expected="an OpenAI-style model list", optional=True)
        models = [m["id"] for m in listed.get("data", []) if isinstance(m, dict) and isinstance(m.get("id"), str)] \
            if isinstance(listed, dict) else []
        if spec.served_model is not None:
            if models and spec.served_model not in models:
                raise self._error(f"served_model {spec.served_model!r} is not among the models {spec.url}/models lists "
                                  f"({', '.join(models)}); set served_model to one of them")
            served = spec.served_model
        elif len(models) == 1:
            served = models[0]
        else:
            raise self._error(f"{spec.url} " + (f"serves several models ({', '.join(models)})" if models else
                              "lists no models at /models") + "; name the one to use in endpoint.served_model")
        api = await self._get_json(f"{spec.url}/openapi.json", expected="an OpenAPI description", optional=True)
        if api is None:
            parts = urlsplit(spec.url)
            if parts.path not in ("", "/"):
                api = await self._get_json(f"{parts.scheme}://{parts.netloc}/openapi.json",
                                           expected="an OpenAPI description", optional=True)
        info = api.get("info") if isinstance(api, dict) else None
        info = info if isinstance(info, dict) else {}
        return {"served_model": served, "models": models, "server": _text(info.get("title")),
                "server_version": _text(info.get("version"))}

    async def _get_json(self, url: str, *, expected: str, optional: bool = False) -> Any:
        import aiohttp

        session = await self._session_()
        try:
            async with session.get(url, headers=self.headers,
                                   timeout=aiohttp.ClientTimeout(total=min(self.spec.timeout_s, OPEN_TIMEOUT_S))) as r:
                body = await r.read()
                if r.status in (401, 403):
                    raise self._error(self._auth_problem(url, r.status))
                if r.status >= 400:
                    if optional:
                        return None
                    raise self._error(f"{url} answered HTTP {r.status} where {expected} was expected: "
                                      f"{_snippet(body)}")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise self._error(f"cannot reach the endpoint at {url} ({_reason(exc)}): is the server running and "
                              "listening there? (endpoint.url)") from None
        try:
            return json.loads(body)
        except ValueError:
            if optional:
                return None
            raise self._error(f"{url} answered something that is not JSON where {expected} was expected: "
                              f"{_snippet(body)}") from None

    def _auth_problem(self, url: str, status: int) -> str:
        env = self.spec.api_key_env
        return (f"{url} refused the request (HTTP {status}): " +
                (f"the key in ${env} was not accepted" if env else "it needs an API key: export it and name the "
                 "variable in endpoint.api_key_env"))

    async def _embed_all(self, texts: list[str], batch_size: int,
                         progress: Callable[[int], None] | None) -> tuple[np.ndarray, int | None]:
        server = self.server
        assert server is not None
        gate = asyncio.Semaphore(self.spec.concurrency)
        starts = range(0, len(texts), batch_size)

        failed_already = asyncio.Event()

        async def one(number: int, start: int) -> tuple[np.ndarray, int | None]:
            async with gate:
                if failed_already.is_set():  # woken by a failed request's release, before the cancel reached us
                    raise asyncio.CancelledError
                batch = texts[start:start + batch_size]
                what = f"request {number + 1} of {len(starts)} (texts {start}-{start + len(batch) - 1} of this call)"
                try:
                    found = await self._embed_batch(batch, what=what, dimension=server.dimension,
                                                    served=server.served_model)
                except BaseException:
                    failed_already.set()
                    raise
            if progress:
                progress(len(batch))
            return found

        tasks = [asyncio.ensure_future(one(i, s)) for i, s in enumerate(starts)]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in pending:
            task.cancel()
        failed = [t for t in tasks if t in done and not t.cancelled() and t.exception() is not None]
        if failed:
            await asyncio.gather(*pending, return_exceptions=True)
            raise failed[0].exception()  # type: ignore[misc]
        parts = [t.result() for t in tasks]
        tokens = [n for _, n in parts]
        return (np.concatenate([v for v, _ in parts]),
                None if any(n is None for n in tokens) else sum(n for n in tokens if n is not None))

    def payload(self, texts: list[str], served: str) -> dict[str, Any]:
        if self.spec.api == "tei":
            payload: dict[str, Any] = {"inputs": texts, "truncate": True}
            if self.spec.normalize is not None:
                payload["normalize"] = self.spec.normalize
            return payload
        return {"input": texts, "model": served, "encoding_format": "float"}

    def answer_problem(self, body: bytes, n: int) -> str | None:
        """Why a 2xx answer to `n` texts is not what `embed` accepts (`harness load` counts it as an error), or None."""
        try:
            vectors, _ = self._vectors(json.loads(body), n, what="a request")
        except (ValueError, HarnessError):
            return "bad-response"
        server = self.server
        if server is not None and vectors.shape[1] != server.dimension or not np.isfinite(vectors).all():
            return "bad-response"
        return None

    async def _embed_batch(self, texts: list[str], *, what: str, dimension: int | None,
                           served: str) -> tuple[np.ndarray, int | None]:
        answer = await self._post(self.payload(texts, served), what=what)
        vectors, tokens = self._vectors(answer, len(texts), what=what)
        if dimension is not None and vectors.shape[1] != dimension:
            raise self._error(f"{self.embed_url} answered {what} with {vectors.shape[1]}-dimensional vectors, where "
                              f"it gave {dimension} when opened: the server changed its model during the run")
        bad = ~np.isfinite(vectors).all(axis=1)
        if bad.any():
            raise self._error(f"{self.embed_url} answered {what} with NaN or infinite values in {int(bad.sum())} of "
                              f"{len(texts)} vectors (first: text {int(np.argmax(bad))} of the request)")
        with self._lock:
            self._requests += 1
            self._texts += len(texts)
        return vectors, tokens

    async def _post(self, payload: dict[str, Any], *, what: str) -> Any:
        import aiohttp

        session = await self._session_()
        body = json.dumps(payload).encode()
        timeout = aiohttp.ClientTimeout(total=self.spec.timeout_s)
        kinds: list[str] = []
        for attempt in range(self.spec.retries + 1):
            wait = self.spec.backoff_s * 2 ** attempt
            try:
                async with session.post(self.embed_url, data=body, headers=self.headers, timeout=timeout) as r:
                    raw = await r.read()
                    if r.status in RETRY_STATUSES:
                        kind = f"http-{r.status}"
                        wait = _retry_after(r.headers.get("Retry-After"), wait)
                    elif r.status in (401, 403):
                        raise self._error(self._auth_problem(self.embed_url, r.status))
                    elif r.status >= 400:
                        raise self._error(f"{self.embed_url} answered {what} with HTTP {r.status}: {_snippet(raw)}"
                                          + _status_hint(r.status, self.spec.api))
                    else:
                        try:
                            return json.loads(raw)
                        except ValueError:
                            raise self._error(f"{self.embed_url} answered {what} with something that is not JSON: "
                                              f"{_snippet(raw)}") from None
            except asyncio.TimeoutError:
                kind = "timeout"
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
                kind = "connection"
                if self.server is None:  # not opened yet: nothing there to retry against
                    raise self._error(f"cannot reach the endpoint at {self.embed_url} ({_reason(exc)}): is the server "
                                      "running and listening there? (endpoint.url)") from None
            kinds.append(kind)
            if attempt == self.spec.retries:
                break
            with self._lock:
                self._retries[kind] += 1
            await asyncio.sleep(wait)
        tried = ", ".join(f"{n} {k}" for k, n in Counter(kinds).items())
        raise self._error(f"{self.embed_url} failed {what} {len(kinds)} times ({tried}); "
                          f"{self.spec.retries} retries allowed (endpoint.retries), "
                          f"retries this run so far: {dict(sorted(self.usage().retries.items())) or 'none'}")

    def _vectors(self, answer: Any, n: int, *, what: str) -> tuple[np.ndarray, int | None]:
        shape = ("a JSON object whose data list holds one {embedding: [...], index: i} per text (OpenAI's "
                 "/v1/embeddings)" if self.spec.api == "openai" else
                 "a JSON list of one vector per text (TEI's /embed)")
        tokens: int | None = None
        try:
            if self.spec.api == "openai":
                items = answer["data"]
                order = [int(item["index"]) for item in items]
                rows = [items[i]["embedding"] for i in np.argsort(order, kind="stable")]
                if sorted(order) != list(range(len(items))):
                    raise ValueError("indices")
                usage = answer.get("usage")
                count = usage.get("prompt_tokens") if isinstance(usage, dict) else None
                tokens = count if isinstance(count, int) and not isinstance(count, bool) else None
            else:
                rows = answer
            if not isinstance(rows, list) or any(not isinstance(r, list) for r in rows):
                raise ValueError("rows")
            vectors = np.asarray(rows, dtype=np.float32)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            raise self._error(f"{self.embed_url} answered {what} in another shape than {shape}: "
                              f"{_snippet(json.dumps(answer).encode())}; check endpoint.api") from None
        if vectors.ndim != 2 or vectors.shape[0] != n or vectors.shape[1] == 0:
            raise self._error(f"{self.embed_url} answered {what} with {vectors.shape[0] if vectors.ndim else 0} "
                              f"vectors for {n} texts (expected {shape})")
        return vectors, tokens


class EndpointEngine:
    """An `Encoder`'s engine that sends its texts to an endpoint (`engine: http`)."""

    def __init__(self, spec: EndpointSpec, *, batch_size: int, where: str):
        self.endpoint = Endpoint(spec, where=where)
        self.server = self.endpoint.open()
        self.batch_size = batch_size
        self.tokens_counted = True  # until an answer comes without a token count

    @property
    def runtime_info(self) -> dict[str, object]:
        return {"runtime": self.server.label, "execution_provider": f"http {self.server.api}", "threads": None}

    def key_settings(self) -> dict[str, object]:
        return {"endpoint": self.server.fingerprint}

    def close(self) -> None:
        self.endpoint.close()

    def encode(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> EncodeResult:
        vectors, tokens = self.endpoint.embed(texts, batch_size=self.batch_size, progress=progress)
        self.tokens_counted &= tokens is not None
        # tokens 0: the server did not count them (records then state no tokens/s)
        return EncodeResult(vectors, tokens or 0)


def _api_key(spec: EndpointSpec, where: str) -> str | None:
    if spec.api_key_env is None:
        return None
    key = os.environ.get(spec.api_key_env)
    if not key:
        raise HarnessError(f"{where}: endpoint.api_key_env names ${spec.api_key_env}, which is not set (or empty); "
                           f"export the API key as {spec.api_key_env}")
    return key


def _retry_after(header: str | None, default: float) -> float:
    try:
        return min(MAX_RETRY_WAIT_S, max(0.0, float(header))) if header else default
    except ValueError:  # an HTTP date: wait as without one
        return default


def _status_hint(status: int, api: str) -> str:
    if status in (404, 405):
        other = "tei" if api == "openai" else "openai"
        return f"; the server has no such route: is endpoint.url the API base, and is the API {other!r}?"
    if status in (400, 413, 422):
        return "; the server refused the request: too many or too long texts (batch_size), or a wrong served_model?"
    return ""


def _snippet(body: bytes) -> str:
    return clip(body[:400].decode("utf-8", errors="replace").strip() or "(empty)")


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
