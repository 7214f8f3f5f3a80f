"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests (judge, `--backend openai`, distil).

`serve(respond)` starts a threaded HTTP server on a free loopback port and yields its base URL
(`http://127.0.0.1:PORT/v1`). `respond(body, n)` gets each request's JSON body and the 1-based count of
requests so far, and returns one of:
- a string: answered as a normal chat completion with that text;
- `(status, payload)`: that HTTP status with `payload` as the body (a dict is sent as JSON, bytes as is);
- `(status, payload, headers)`: the same with these response headers (e.g. {"Retry-After": "1"});
- `("stall", seconds)`: sleep that long before answering (for timeouts), then answer "late".
Every request body is kept in `server.requests` for assertions.
"""

import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def completion(text: str, model: str = "test-model", finish_reason: str = "stop") -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
    }


@contextmanager
def serve(respond):
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            with lock:
                server.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
                n = len(server.requests)
            result = respond(body, n)
            status, payload, headers = 200, None, {}
            if isinstance(result, str):
                payload = completion(result, body.get("model", "test-model"))
            elif result[0] == "stall":
                time.sleep(result[1])
                payload = completion("late")
            elif len(result) == 3:
                status, payload, headers = result
            else:
                status, payload = result
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout tests)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        server.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        yield server
    finally:
        server.shutdown()
        server.server_close()
