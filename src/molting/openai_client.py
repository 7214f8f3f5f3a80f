"""A small client for OpenAI-compatible chat endpoints (llama.cpp server, Ollama, vLLM, hosted APIs).

Reached by the LLM judge, `molt eval --backend openai` and `molt data distil`. It speaks only
`POST {url}/chat/completions`, with the standard library (no SDK to pin), and is built for endpoints
that misbehave: every failure — refused connection, timeout, HTTP error, a body that is not the expected
JSON — is retried with exponential backoff (or after the wait a 429 or 503 names in Retry-After, up to a
minute) and then surfaces as a `ChatError` with a one-line reason,
never as a crash of the caller. The API key is read from an environment variable, never from a file.

`ChatCache` keeps one small JSON file per request (keyed by sha256 of model, messages and parameters),
each written atomically, so a re-run after a crash pays only for what had not finished.
"""

import email.utils
import json
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from molting.io import sha256_text, write_json_atomic

RETRYABLE_HTTP = {408, 409, 429, 500, 502, 503, 504}
# The longest wait between attempts: a hosted API's rate limit (429) resets within a minute, and a server
# asking for longer (Retry-After: 600) is told no rather than holding a whole evaluation for it.
MAX_WAIT_S = 60.0


@dataclass
class Endpoint:
    url: str  # base URL up to /v1, e.g. http://127.0.0.1:8080/v1 (a trailing /chat/completions is accepted)
    model: str  # model name as the server knows it
    api_key_env: str | None = "OPENAI_API_KEY"  # environment variable holding the key; unset → no auth header
    timeout_s: float = 60.0  # per request
    max_retries: int = 3  # retries after the first attempt, with exponential backoff

    def __post_init__(self):
        self.url = self.url.rstrip("/").removesuffix("/chat/completions")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"endpoint url must start with http:// or https:// (got {self.url!r})")

    @property
    def chat_url(self) -> str:
        return f"{self.url}/chat/completions"


@dataclass
class ChatReply:
    text: str
    finish_reason: str | None
    raw: dict


class ChatError(Exception):
    """The endpoint gave no usable answer after every retry; `reason` says why in one line. `status` is the
    HTTP status of a refusal the server answered (400: the request itself was refused), None otherwise."""

    def __init__(self, reason: str, status: int | None = None):
        self.reason = reason
        self.status = status
        super().__init__(reason)


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after  # seconds the server asked to wait (Retry-After), None when it did not


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header in seconds: delta-seconds ("30") or an HTTP-date ("Wed, 21 Oct 2026 07:28:00 GMT",
    counted from `now`); None when absent or unreadable."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _request_body(endpoint: Endpoint, request: dict) -> dict:
    body = {"model": endpoint.model, "messages": request["messages"]}
    body["temperature"] = request.get("temperature", 0.0)
    for key in ("max_tokens", "seed", "top_p"):
        if request.get(key) is not None:
            body[key] = request[key]
    body.update(request.get("extra") or {})
    return body


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(parts.scheme)


class _NoCrossOriginRedirect(urllib.request.HTTPRedirectHandler):
    """urllib follows a redirect with the request's headers, Authorization included: an endpoint answering
    302 to another host would receive the API key. A redirect to another origin is refused instead."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if _origin(newurl) != _origin(req.full_url):
            raise ChatError(
                f"{req.full_url} redirected (HTTP {code}) to {newurl}, another origin; molting does not follow it, "
                "so the API key is not sent there. Set the endpoint's url to the address that answers."
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_NoCrossOriginRedirect)


def _post_once(endpoint: Endpoint, body: dict) -> ChatReply:
    headers = {"Content-Type": "application/json"}
    key = os.environ.get(endpoint.api_key_env) if endpoint.api_key_env else None
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(endpoint.chat_url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with _OPENER.open(req, timeout=endpoint.timeout_s) as resp:
            payload = resp.read()
    except urllib.error.HTTPError as e:
        detail = e.read()[:200].decode("utf-8", "replace").strip()
        message = f"HTTP {e.code} from {endpoint.chat_url}" + (f": {detail}" if detail else "")
        if e.code in RETRYABLE_HTTP:
            wait = retry_after_seconds(e.headers.get("Retry-After")) if e.code in (429, 503) else None
            if wait is not None and wait > MAX_WAIT_S:
                raise ChatError(
                    f"{message} (the server asks to retry after {wait:.0f} s, longer than the {MAX_WAIT_S:.0f} s "
                    "molting waits; lower the request rate, e.g. --concurrency 1, or try later)"
                ) from None
            raise _Retryable(message, wait) from None
        raise ChatError(message, status=e.code) from None
    except TimeoutError:
        raise _Retryable(f"no answer from {endpoint.chat_url} within {endpoint.timeout_s:g} s") from None
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, TimeoutError):
            raise _Retryable(f"no answer from {endpoint.chat_url} within {endpoint.timeout_s:g} s") from None
        raise _Retryable(f"cannot reach {endpoint.chat_url}: {reason}") from None
    except (ConnectionError, OSError) as e:
        raise _Retryable(f"connection to {endpoint.chat_url} failed: {e}") from None
    try:
        data = json.loads(payload)
        choice = data["choices"][0]
        text = choice["message"]["content"]
        if not isinstance(text, str):
            raise TypeError("message.content is not a string")
    except (ValueError, KeyError, IndexError, TypeError) as e:
        snippet = payload[:120].decode("utf-8", "replace")
        raise _Retryable(f"malformed reply from {endpoint.chat_url} ({e}): {snippet!r}") from None
    return ChatReply(text=text, finish_reason=choice.get("finish_reason"), raw=data)


def chat(
    endpoint: Endpoint,
    messages: list[dict],
    *,
    temperature: float = 0.0,
    max_tokens: int | None = None,
    seed: int | None = None,
    extra: dict | None = None,
) -> ChatReply:
    """One chat completion, retried on transient failures; raises ChatError when none succeeds."""
    request = {"messages": messages, "temperature": temperature, "max_tokens": max_tokens, "seed": seed}
    request["extra"] = extra
    return _chat_request(endpoint, request)


def _chat_request(endpoint: Endpoint, request: dict) -> ChatReply:
    body = _request_body(endpoint, request)
    last = "no attempt made"
    retry_after = None
    for attempt in range(endpoint.max_retries + 1):
        if attempt:
            if retry_after is not None:  # the server said when (429, 503 with Retry-After): that, no sooner
                time.sleep(retry_after)
            else:  # 0.5 s, 1 s, 2 s … up to MAX_WAIT_S, with jitter so parallel workers do not retry in lock step
                time.sleep(min(0.5 * 2 ** (attempt - 1), MAX_WAIT_S) * (0.5 + random.random()))
        try:
            return _post_once(endpoint, body)
        except _Retryable as e:
            last, retry_after = str(e), e.retry_after
    raise ChatError(f"{last} (after {endpoint.max_retries + 1} attempts)")


class ChatCache:
    """Replies on disk, one JSON file per request, keyed by model, messages and parameters."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def key(self, endpoint: Endpoint, request: dict) -> str:
        body = _request_body(endpoint, request)
        return sha256_text(json.dumps(body, sort_keys=True, ensure_ascii=False))

    def get(self, endpoint: Endpoint, request: dict) -> ChatReply | None:
        file = self.path / f"{self.key(endpoint, request)}.json"
        try:
            data = json.loads(file.read_text())
            return ChatReply(text=data["text"], finish_reason=data.get("finish_reason"), raw=data.get("raw", {}))
        except (OSError, ValueError, KeyError):
            return None  # absent, or unreadable: ask again

    def put(self, endpoint: Endpoint, request: dict, reply: ChatReply) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        record = {"text": reply.text, "finish_reason": reply.finish_reason, "raw": reply.raw}
        write_json_atomic(self.path / f"{self.key(endpoint, request)}.json", record)


def chat_many(
    endpoint: Endpoint,
    requests: list[dict],
    *,
    concurrency: int = 4,
    cache: ChatCache | None = None,
    on_done: Callable[[int, "ChatReply | ChatError"], None] | None = None,
) -> list["ChatReply | ChatError"]:
    """Answer `requests` (each a dict with `messages` and optional temperature, max_tokens, seed, top_p,
    extra) with at most `concurrency` in flight. Returns, in request order, a ChatReply or the ChatError
    that request ended with; one failure never stops the others. Cached replies are reused and new ones
    stored as each arrives. `on_done(index, result)` is called as each request finishes (progress bars)."""

    def work(index: int):
        request = requests[index]
        cached = cache.get(endpoint, request) if cache else None
        if cached is not None:
            result = cached
        else:
            try:
                result = _chat_request(endpoint, request)
            except ChatError as e:
                result = e
            else:
                if cache:
                    cache.put(endpoint, request, result)
        if on_done:
            on_done(index, result)
        return result

    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
    try:
        return list(pool.map(work, range(len(requests))))
    except BaseException:
        # Ctrl-C: drop the queued requests instead of working through them; the cache keeps what finished
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
