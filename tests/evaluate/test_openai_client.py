"""The OpenAI-compatible client against a real HTTP server on 127.0.0.1: answers, retries, failures that
become ChatError with a reason, the API key from the environment, concurrency and the on-disk cache."""

import email.utils
import socket
import time

import pytest
from openai_server import serve

from molting.openai_client import ChatCache, ChatError, Endpoint, chat, chat_many, retry_after_seconds

MESSAGES = [{"role": "user", "content": "Quem é o João?"}]


def fast(url, **kw):
    return Endpoint(url=url, model="judge", timeout_s=kw.pop("timeout_s", 5.0), **kw)


def test_answer_and_request_shape(monkeypatch):
    monkeypatch.setenv("MOLT_TEST_KEY", "sk-test-123")
    with serve(lambda body, n: "O João é o dev com quem eu trabalho.") as server:
        reply = chat(fast(server.url, api_key_env="MOLT_TEST_KEY"), MESSAGES, max_tokens=32, seed=7)
    assert reply.text == "O João é o dev com quem eu trabalho."
    assert reply.finish_reason == "stop"
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["body"] == {"model": "judge", "messages": MESSAGES, "temperature": 0.0, "max_tokens": 32, "seed": 7}
    assert request["headers"]["Authorization"] == "Bearer sk-test-123"


def test_no_key_no_header(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with serve(lambda body, n: "ok") as server:
        chat(fast(server.url), MESSAGES)
    assert "Authorization" not in server.requests[0]["headers"]


def test_transient_errors_are_retried():
    # 503, then malformed JSON, then a good answer: the third attempt wins
    answers = {1: (503, {"error": "busy"}), 2: (200, b"{not json"), 3: "finally"}
    with serve(lambda body, n: answers[n]) as server:
        reply = chat(fast(server.url, max_retries=3), MESSAGES)
    assert reply.text == "finally"
    assert len(server.requests) == 3


def test_garbage_after_every_retry_is_a_chat_error():
    with serve(lambda body, n: (200, {"choices": []})) as server:
        with pytest.raises(ChatError, match=r"malformed reply .* \(after 2 attempts\)"):
            chat(fast(server.url, max_retries=1), MESSAGES)
    assert len(server.requests) == 2


def test_client_error_is_not_retried():
    with serve(lambda body, n: (401, {"error": "bad key"})) as server:
        with pytest.raises(ChatError, match="HTTP 401"):
            chat(fast(server.url, max_retries=3), MESSAGES)
    assert len(server.requests) == 1


def test_stalled_server_times_out():
    with serve(lambda body, n: ("stall", 3)) as server:
        with pytest.raises(ChatError, match="no answer .* within 0.5 s"):
            chat(fast(server.url, timeout_s=0.5, max_retries=0), MESSAGES)


def test_refused_connection():
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ChatError, match="cannot reach"):
        chat(fast(f"http://127.0.0.1:{port}/v1", max_retries=0), MESSAGES)


def test_chat_many_keeps_order_isolates_failures_and_caches(tmp_path):
    def respond(body, n):
        question = body["messages"][-1]["content"]
        return (500, {"error": "no"}) if question == "q2" else f"answer to {question}"

    requests = [{"messages": [{"role": "user", "content": f"q{i}"}]} for i in range(5)]
    cache = ChatCache(tmp_path / "cache")
    done = []
    with serve(respond) as server:
        endpoint = fast(server.url, max_retries=1)
        results = chat_many(endpoint, requests, concurrency=3, cache=cache, on_done=lambda i, r: done.append(i))
        first_count = len(server.requests)
        again = chat_many(endpoint, requests, concurrency=3, cache=cache)
    assert [r.text if not isinstance(r, ChatError) else "ERR" for r in results] == [
        "answer to q0",
        "answer to q1",
        "ERR",
        "answer to q3",
        "answer to q4",
    ]
    assert sorted(done) == [0, 1, 2, 3, 4]
    assert first_count == 4 + 2  # four answers, and q2 tried twice
    # the re-run answered the four successes from the cache and asked again only for the failure
    assert len(server.requests) - first_count == 2
    assert [getattr(r, "text", None) for r in again] == [getattr(r, "text", None) for r in results]


def test_cache_ignores_a_corrupt_file(tmp_path):
    cache = ChatCache(tmp_path)
    with serve(lambda body, n: "fresh") as server:
        endpoint = fast(server.url)
        request = {"messages": MESSAGES}
        (tmp_path / f"{cache.key(endpoint, request)}.json").write_text('{"text": "half')
        assert chat_many(endpoint, [request], cache=cache)[0].text == "fresh"
        assert cache.get(endpoint, request).text == "fresh"


def test_a_redirect_to_another_origin_does_not_get_the_key(monkeypatch):
    # urllib would follow a 302 with every header: the key would reach whatever host the endpoint names
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen = []

    class Catcher(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _record(self):
            seen.append(dict(self.headers))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _record

    catcher = ThreadingHTTPServer(("127.0.0.1", 0), Catcher)
    threading.Thread(target=catcher.serve_forever, daemon=True).start()
    other = f"http://localhost:{catcher.server_address[1]}/v1/chat/completions"

    class Redirector(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(302)
            self.send_header("Location", other)
            self.send_header("Content-Length", "0")
            self.end_headers()

    redirector = ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    threading.Thread(target=redirector.serve_forever, daemon=True).start()
    monkeypatch.setenv("MOLT_TEST_KEY", "sk-secret")
    try:
        url = f"http://127.0.0.1:{redirector.server_address[1]}/v1"
        with pytest.raises(ChatError, match="redirected \\(HTTP 302\\) to http://localhost:.*another origin"):
            chat(fast(url, api_key_env="MOLT_TEST_KEY", max_retries=0), MESSAGES)
    finally:
        redirector.shutdown()
        catcher.shutdown()
    assert seen == []  # the other origin got no request at all, so no key


def _timed(answers):
    """A respond function answering `answers[n]`, recording when each request came."""
    times = []

    def respond(body, n):
        times.append(time.monotonic())
        return answers[n]

    return respond, times


def test_a_429_waits_as_long_as_retry_after_says():
    # without Retry-After the first retry comes after 0.25–0.75 s; the server asks for 1 s
    respond, times = _timed({1: (429, {"error": "rate limited"}, {"Retry-After": "1"}), 2: "after the wait"})
    with serve(respond) as server:
        reply = chat(fast(server.url, max_retries=1), MESSAGES)
    assert reply.text == "after the wait" and len(server.requests) == 2
    assert times[1] - times[0] >= 1.0


def test_a_503_retry_after_may_be_an_http_date():
    when = email.utils.formatdate(time.time() + 2, usegmt=True)  # whole seconds: 1 to 2 s from now
    respond, times = _timed({1: (503, {"error": "overloaded"}, {"Retry-After": when}), 2: "back"})
    with serve(respond) as server:
        assert chat(fast(server.url, max_retries=1), MESSAGES).text == "back"
    assert times[1] - times[0] >= 0.95


def test_a_retry_after_longer_than_a_minute_is_not_waited_for():
    with serve(lambda body, n: (429, {"error": "quota"}, {"Retry-After": "600"})) as server:
        started = time.monotonic()
        with pytest.raises(ChatError, match=r"HTTP 429 .*retry after 600 s, longer than the 60 s molting waits"):
            chat(fast(server.url, max_retries=3), MESSAGES)
    assert len(server.requests) == 1 and time.monotonic() - started < 5


def test_retry_after_values():
    assert retry_after_seconds("30") == 30.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412500.0) == 0.0  # already past
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("-5") is None
