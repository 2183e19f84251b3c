"""A large fuzz run at the served app: ten thousand generated requests, every answer held to the contract.

    python -m bench.bench_fuzz --url http://127.0.0.1:8000   # against a running `serve run`
    python -m bench.bench_fuzz --serve                       # starts Ray + the app itself (make bench-fuzz)

Most requests are ones the server should refuse quickly: hostile uploads (tests/fuzz_strategies.py) and broken
multipart bodies, header values that are not UTF-8 or are long, unknown routes and methods, bad session ids,
schemathesis cases drawn from the committed openapi.yaml (valid and invalid), and malformed HTTP sent over a
raw socket; and hostile text (control, format, symbols, long runs, mixed scripts) to /v1/audio/speech and to
/v1/chat/completions, text or spoken. After every `--dialogue-every` requests comes a real spoken question
(the slow path). It counts the answers by status and kind, and fails (exit 1) when any is a 5xx other than
503/504, or an error that is not the JSON error body (plain text, HTML, FastAPI's `detail`; OpenAI's shape on
/v1), or a 503 without Retry-After.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from voice_orchestrator.errors import is_openai_path

ROOT = Path(__file__).resolve().parents[1]
DIALOGUE = "/api/orchestrator/dialogue"
STREAM = "/api/orchestrator/dialogue/stream"
STATUS = "/api/orchestrator/status"
SESSIONS = "/api/orchestrator/sessions/"
ERROR_KEYS = {"error_code", "message", "details", "retry_after", "request_id"}
# Relative weights of the request kinds: mostly requests that are refused in milliseconds.
KINDS = {"upload": 8, "route": 4, "header": 4, "session": 2, "schema": 3, "raw": 1, "text": 2}
OPENAI_ERROR_KEYS = {"message", "type", "param", "code"}
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]


@dataclass
class Answer:
    status: int  # 0 = the connection closed without a response
    content_type: str
    body: bytes
    retry_after: str | None
    head: bool = False


@dataclass
class Tally:
    by_status: Counter[int] = field(default_factory=Counter)
    by_kind: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    violations: list[str] = field(default_factory=list)
    not_sent: Counter[str] = field(default_factory=Counter)  # drawn, but the HTTP client would not send it
    sent: int = 0

    def record(self, kind: str, request: str, answer: Answer, openai: bool = False) -> None:
        self.sent += 1
        if self.sent % 1000 == 0:
            print(f"{self.sent} requests, {len(self.violations)} contract violations", flush=True)
        self.by_status[answer.status] += 1
        self.by_kind[kind][answer.status] += 1
        problem = contract_violation(answer, openai)
        if problem is not None:
            self.violations.append(f"{kind}: {request[:160]} -> {problem}")


def contract_violation(answer: Answer, openai: bool = False) -> str | None:
    """What is wrong with an answer, or None: no 5xx but 503/504, every error the JSON error body (OpenAI's
    shape on the /v1 routes)."""
    if answer.status == 0 or answer.status < 400:
        return None
    if answer.status >= 500 and answer.status not in (503, 504):
        return f"{answer.status} (a server error): {answer.body[:200]!r}"
    if not answer.content_type.startswith("application/json"):
        return f"{answer.status} as {answer.content_type or 'no content type'}: {answer.body[:200]!r}"
    if answer.head:
        return None  # a HEAD answer has the headers of the JSON error and no body
    try:
        body = json.loads(answer.body)
    except ValueError:
        return f"{answer.status} whose body is not JSON: {answer.body[:200]!r}"
    shaped = (
        isinstance(body, dict) and set(body) == {"error"} and set(body["error"]) == OPENAI_ERROR_KEYS
        if openai
        else isinstance(body, dict) and set(body) == ERROR_KEYS
    )
    if not shaped:
        return f"{answer.status} whose body is not the error contract: {answer.body[:200]!r}"
    if answer.status == 503 and not answer.retry_after:
        return "503 without Retry-After"
    return None


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return str(value[0] if isinstance(value, list) else value)
    return None


def _from_httpx(response: httpx.Response) -> Answer:
    return Answer(
        response.status_code,
        response.headers.get("content-type", ""),
        response.content,
        response.headers.get("retry-after"),
    )


# --- what is sent ------------------------------------------------------------------------------------------

# Header values h11 will send (visible ASCII, obs-text bytes, inner spaces); CR, LF and NUL go by raw socket.
_HEADER_BYTES = st.binary(max_size=300).map(
    lambda raw: bytes(b if b == 9 or 0x20 <= b <= 0x7E or b >= 0x80 else 0x3F for b in raw).strip(b" \t")
)
header_values = st.one_of(
    _HEADER_BYTES,
    st.text(max_size=200)
    .map(lambda text: text.encode("utf-8", "replace"))
    .map(lambda raw: bytes(b if b == 9 or 0x20 <= b <= 0x7E or b >= 0x80 else 0x3F for b in raw).strip()),
    st.integers(129, 20_000).map(lambda size: b"r" * size),
    st.sampled_from([b"\xff", b"\xc3\x28", b"abc\x80def", b"", b"ok-id-1"]),
)
form_texts = st.one_of(
    st.none(), st.text(max_size=80), st.sampled_from(["ja", "en", "auto", "", "xx", "EN "])
)
paths = st.one_of(
    st.sampled_from([DIALOGUE, STREAM, STATUS, SESSIONS + "abc", "/", "/docs", "/openapi.json", "/api"]),
    st.text(max_size=60).map(lambda text: "/" + quote(text, safe="/")),
    st.text(max_size=30).map(lambda text: "/api/orchestrator/" + quote(text, safe="")),
)
_POST = b"POST /api/orchestrator/dialogue HTTP/1.1\r\nHost: x\r\n"
RAW_REQUESTS = [
    b"GET /api/orchestrator/status HTTP/1.1\r\nHost: x\r\nX-Request-ID: a\rb\r\n\r\n",
    b"GET /api/orchestrator/status HTTP/1.1\nHost: x\nX-Session-ID: a\n\n",
    _POST + b"Content-Length: -1\r\n\r\n",
    _POST + b"Content-Length: abc\r\n\r\n",
    _POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    _POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
    b"GET /api/orchestrator/status HTTP/1.1\r\nHost: x\r\nX-Request-ID: \x00\r\n\r\n",
    b"GET /api/orchestrator/status HTTP/9.9\r\nHost: x\r\n\r\n",
    b"BREW /api/orchestrator/status HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/orchestrator/status HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello on the plain-HTTP port
]


class Fuzzer:
    def __init__(self, url: str, clips: list[bytes], dialogue_every: int, deadline: float) -> None:
        import schemathesis
        from schemathesis.core.result import Err

        from tests.fuzz_strategies import hostile_texts, hostile_uploads

        self.url = url
        self.host, self.port = httpx.URL(url).host, httpx.URL(url).port or 80
        self.client = httpx.Client(base_url=url, timeout=180)
        self.clips = clips
        self.dialogue_every = dialogue_every
        self.dialogues = 0
        self.deadline = deadline
        self.tally = Tally()
        self.uploads = hostile_uploads
        self.texts = hostile_texts
        schema = schemathesis.openapi.from_path(ROOT / "openapi.yaml")
        self.operations = []
        for result in schema.get_all_operations():
            if isinstance(result, Err):
                raise result.err()  # the committed spec does not load: tests/unit/test_openapi.py says why
            self.operations.append(result.ok())

    def one(self, data: st.DataObject) -> None:
        kind = data.draw(st.sampled_from([name for name, weight in KINDS.items() for _ in range(weight)]))
        getattr(self, kind)(data, kind)
        # The real questions are not drawn (hypothesis replays draws, so no draw may depend on this count).
        if self.dialogue_every and self.tally.sent >= (self.dialogues + 1) * self.dialogue_every:
            self.real_dialogue()

    def expired(self) -> bool:
        """Past --max-seconds: the remaining examples are still drawn (hypothesis wants the same draws every
        time) but no longer sent, so the run ends in seconds."""
        return time.monotonic() > self.deadline

    def send(self, kind: str, method: str, path: str, **kwargs: Any) -> None:
        if self.expired():
            return
        try:
            answer = _from_httpx(self.client.request(method, path, **kwargs))
            answer.head = method == "HEAD"
        except httpx.TransportError as error:
            answer = Answer(0, "", repr(error).encode(), None)
        request = f"{method} {path} {kwargs.get('headers', '')}"
        self.tally.record(kind, request, answer, openai=is_openai_path(path.split("?")[0]))

    def text(self, data: st.DataObject, kind: str) -> None:
        """Text to speak or to answer: control and format characters, symbols, long runs, mixed scripts."""
        text = data.draw(self.texts)
        if data.draw(st.booleans()):
            body: dict[str, Any] = {
                "model": "tts-1",
                "voice": "alloy",
                "input": text,
                "response_format": "pcm",
            }
            self.send(kind, "POST", "/v1/audio/speech", json=body)
            return
        messages = [{"role": "user", "content": text}]
        body = {"model": "gpt-4o-mini", "messages": messages, "max_tokens": 8}
        if data.draw(st.booleans()):  # spoken: the reply goes through the turn core and a voice
            body |= {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "pcm16"}}
        self.send(kind, "POST", "/v1/chat/completions", json=body)

    def upload(self, data: st.DataObject, kind: str) -> None:
        path = data.draw(st.sampled_from([DIALOGUE, STREAM]))
        audio = data.draw(self.uploads)
        if data.draw(st.booleans()):
            field_name = data.draw(st.sampled_from(["audio"] * 4 + ["Audio", "file", ""]))
            content_type = data.draw(
                st.sampled_from(["audio/wav", "application/octet-stream", "text/plain", ""])
            )
            fields = {
                name: value
                for name in ("language", "session_id", "voice")
                if (value := data.draw(form_texts, label=name)) is not None
            }
            files = {field_name or "x": ("q.wav", audio, content_type)}
            self.send(kind, "POST", path, files=files, data=fields)
            return
        # A body that is not the multipart the route wants, or a broken one.
        content_type = data.draw(
            st.sampled_from(
                [
                    "multipart/form-data",
                    "multipart/form-data; boundary=b",
                    "multipart/form-data; boundary=" + "x" * 300,
                    "application/octet-stream",
                    "application/x-www-form-urlencoded",
                    "application/json",
                    "audio/wav",
                ]
            )
        )
        body = data.draw(
            st.one_of(
                st.just(audio),
                st.just(b'--b\r\nContent-Disposition: form-data; name="audio"; filename="q"\r\n\r\n' + audio),
                st.just(b"--b\r\nContent-Disposition: form-data\r\n\r\n" + audio + b"\r\n--b--\r\n"),
            )
        )
        self.send(kind, "POST", path, content=body, headers={"content-type": content_type})

    def route(self, data: st.DataObject, kind: str) -> None:
        self.send(kind, data.draw(st.sampled_from(METHODS)), data.draw(paths))

    def header(self, data: st.DataObject, kind: str) -> None:
        names = st.sampled_from(
            ["X-Request-ID", "X-Session-ID", "Authorization", "Accept", "Content-Type", "X-Y"]
        )
        headers = data.draw(st.lists(st.tuples(names, header_values), min_size=1, max_size=3))
        method, path = data.draw(
            st.sampled_from([("GET", STATUS), ("DELETE", SESSIONS + "s1"), ("GET", "/nope")])
        )
        self.send(kind, method, path, headers=[(name.encode(), value) for name, value in headers])

    def session(self, data: st.DataObject, kind: str) -> None:
        session_id = data.draw(
            st.one_of(st.text(max_size=150), st.sampled_from(["a" * 129, " a ", "..", "%"]))
        )
        self.send(kind, data.draw(st.sampled_from(["DELETE", "GET"])), SESSIONS + quote(session_id, safe=""))

    def schema(self, data: st.DataObject, kind: str) -> None:
        from schemathesis import GenerationMode

        operation = data.draw(st.sampled_from(self.operations))
        mode = data.draw(st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE]))
        case = data.draw(operation.as_strategy(generation_mode=mode))
        if self.expired():
            return
        try:
            response = case.call(base_url=self.url, timeout=180)
        except Exception as error:  # the client refused to send what was drawn (e.g. a NUL in a header)
            self.tally.not_sent[type(error).__name__] += 1
            return
        answer = Answer(
            response.status_code,
            _header(response.headers, "content-type") or "",
            response.content,
            _header(response.headers, "retry-after"),
        )
        openai = is_openai_path(case.formatted_path)  # the /v1 routes answer errors in OpenAI's shape
        self.tally.record(kind, f"{case.method} {case.formatted_path}", answer, openai=openai)

    def raw(self, data: st.DataObject, kind: str) -> None:
        request = data.draw(st.one_of(st.sampled_from(RAW_REQUESTS), st.binary(min_size=1, max_size=512)))
        if self.expired():
            return
        self.tally.record(kind, repr(request[:80]), self.send_raw(request))

    def send_raw(self, request: bytes) -> Answer:
        with socket.create_connection((self.host, self.port), timeout=15) as sock:
            try:
                sock.sendall(request)
                sock.shutdown(socket.SHUT_WR)
                received = b""
                while len(received) < 1_000_000:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    received += chunk
            except OSError:
                return Answer(0, "", b"", None)
        head, _, body = received.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) < 2 or not parts[1].isdigit():
            return Answer(0, "", received[:200], None)
        headers = {
            name.strip().lower().decode("latin-1"): value.strip().decode("latin-1")
            for name, _, value in (line.partition(b":") for line in lines[1:])
        }
        return Answer(int(parts[1]), headers.get("content-type", ""), body, headers.get("retry-after"))

    def real_dialogue(self) -> None:
        """Each clip on each dialogue route in turn."""
        clip = self.clips[self.dialogues % len(self.clips)]
        path = (DIALOGUE, STREAM)[self.dialogues // len(self.clips) % 2]
        self.dialogues += 1
        self.send("real dialogue", "POST", path, files={"audio": ("q.wav", clip, "audio/wav")})


def run(url: str, requests: int, dialogue_every: int, max_seconds: float, seed: int) -> Tally:
    from bench.clips import english_clip, japanese_clip

    fuzzer = Fuzzer(url, [japanese_clip(), english_clip()], dialogue_every, time.monotonic() + max_seconds)

    @settings(
        max_examples=requests,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        fuzzer.one(data)

    from hypothesis import seed as hypothesis_seed

    hypothesis_seed(seed)(fuzz)()
    fuzzer.client.close()
    return fuzzer.tally


def report(tally: Tally, seconds: float, url: str) -> None:
    print(f"{tally.sent} requests in {seconds:.0f} s ({tally.sent / max(seconds, 1e-9):.1f}/s) at {url}")
    print(
        "by status: "
        + ", ".join(f"{status or 'closed'}: {n}" for status, n in sorted(tally.by_status.items()))
    )
    for kind, statuses in sorted(tally.by_kind.items()):
        print(
            f"  {kind:<14} "
            + ", ".join(f"{status or 'closed'}: {n}" for status, n in sorted(statuses.items()))
        )
    if tally.not_sent:
        print(f"drawn but not sendable by the client: {dict(tally.not_sent)}")
    print(f"contract violations: {len(tally.violations)}")
    for line in tally.violations[:30]:
        print(f"  {line}")


@contextmanager
def served_app() -> Iterator[str]:
    """Ray + the app deployed as `serve run serve_config.yaml` does it (declarative config, the HTTP edge)."""
    import ray
    import yaml
    from ray import serve

    from tests.serving import app_config, deploy

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        profile = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
        serve.start(
            http_options={"host": "127.0.0.1", "port": 8013}, controller_options=profile["controller_options"]
        )
        deploy(app_config({}))
        yield "http://127.0.0.1:8013"
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--serve", action="store_true", help="start Ray and the app in this process")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument(
        "--dialogue-every", type=int, default=250, help="one real question after every N requests"
    )
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop sending after this long")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    with served_app() if args.serve else _given(args.url) as url:
        started = time.monotonic()
        tally = run(url, args.requests, args.dialogue_every, args.max_seconds, args.seed)
        seconds = time.monotonic() - started
        status = httpx.get(f"{url}{STATUS}", timeout=30)
    report(tally, seconds, url)
    print(f"/status afterwards: {status.status_code} {status.json().get('status')}")
    sys.exit(1 if tally.violations else 0)


if __name__ == "__main__":
    main()
