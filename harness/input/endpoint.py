"""An encoder's `endpoint:` section: the embedding server that encodes its texts (`engine: http`).

    engine: http
    endpoint:
      url: http://127.0.0.1:7997          # the API base: POST {url}/embeddings (openai) or {url}/embed (tei)
      api: openai                         # openai: /v1/embeddings shape (Infinity, vLLM, TEI, hosted APIs); tei
      served_model: all-MiniLM-L6-v2      # the name the server expects (openai); default: the one it lists
      api_key_env: EMBEDDINGS_API_KEY     # the NAME of an environment variable holding the key
      concurrency: 4                      # requests in flight while encoding
      reference_model: bundled:all-MiniLM-L6-v2   # the offline model the server must equal (served-check)

The key itself is read from the environment when the endpoint is opened and is never written to records, logs or
reports; a URL may not carry credentials for the same reason.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AllowInfNan, Field, Strict, StrictBool, field_validator, model_validator

from harness.vocabulary.validation import StrictModel

Api = Literal["openai", "tei"]
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict(), AllowInfNan(False)]
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class EndpointSpec(StrictModel):
    url: str = Field(min_length=1)
    api: Api = "openai"
    served_model: str | None = Field(default=None, min_length=1)
    api_key_env: str | None = None
    concurrency: Int = Field(default=4, gt=0, le=256)
    timeout_s: Float = Field(default=60.0, gt=0)
    retries: Int = Field(default=3, ge=0, le=20)  # per request, on 429/502/503/504, timeouts and dropped connections
    backoff_s: Float = Field(default=0.5, ge=0, le=60)  # the first retry's wait; doubles each time (or Retry-After)
    reference_model: str | None = Field(default=None, min_length=1)  # a model id / path / bundled:...
    reference_sample: Int = Field(default=256, gt=0)  # passages and queries each, encoded both ways
    min_cosine: Float = Field(default=0.999, gt=0, le=1)  # the least per-vector cosine that counts as equal
    # TEI normalises unless told not to; a dot-product model (msmarco-distilbert-dot-v5) needs normalize: false
    normalize: StrictBool | None = None  # None: the server's default

    @model_validator(mode="after")
    def _tei_only(self) -> EndpointSpec:
        if self.normalize is not None and self.api != "tei":
            raise ValueError("normalize is TEI's /embed option; an OpenAI-compatible server returns what it was "
                             "started to: remove normalize, or write api: tei")
        return self

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("endpoint url must be http:// or https:// with a host, e.g. http://127.0.0.1:7997 or "
                             "https://api.example.com/v1 (the API base; the harness appends /embeddings or /embed)")
        if parts.username or parts.password:
            # said without echoing the URL: it holds a secret
            raise ValueError("endpoint url carries credentials, which records and logs would repeat; remove them "
                             "from the URL and name an environment variable holding the key in api_key_env")
        if parts.query or parts.fragment:
            raise ValueError("endpoint url is the API base: remove the ?query or #fragment")
        return url.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, name: str | None) -> str | None:
        if name is not None and not ENV_NAME.fullmatch(name):
            # never repeat the value: it is most likely the key itself
            raise ValueError("api_key_env is the NAME of an environment variable (letters, digits, _), not the key: "
                             "export the key as e.g. EMBEDDINGS_API_KEY and write api_key_env: EMBEDDINGS_API_KEY")
        return name
