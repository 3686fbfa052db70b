"""KiminaLeanVerifier against a stand-in kimina-lean-server on 127.0.0.1 (loopback only, no Lean).

The stand-in answers each snippet by what its proof says (scripted Lean messages), and can be told to
hang, fail with a status, drop the connection or answer garbage."""

from __future__ import annotations

import json
import pickle
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import lean_standin  # tests/: the stand-in's model of what real Lean says
import pytest
from test_lean import AXIOM_EXPLOITS, EXPLOITS, REC, beneath_the_rules

from lit_alpha.verifiers.base import Verdict
from lit_alpha.verifiers.guarded import GuardedVerifier, sanitize
from lit_alpha.verifiers.lean.kimina import KiminaLeanVerifier, judge, snippet_code

STMT = "theorem t1 (a b : ℕ) : a + b = b + a"
RECORD = {"id": "p", "theorem_statement": STMT, "theorem_full_name": "t1", "src_context": "import Mathlib\n"}
AXIOMS_OK = {"severity": "info", "pos": {"line": 5, "column": 0}, "data": "'t1' depends on axioms: [propext]"}


def proof(tactic: str) -> str:
    return f" := by\n  {tactic}\n```"


def like_lean(code: str) -> dict:
    """The answer of a server whose REPL behaves like ``tests/lean_standin.py`` (the exploit corpus's
    model of real Lean): the proof's messages, then the ``#print axioms`` answer."""
    body, _, query = code.rpartition("#print axioms ")
    name = query.strip()
    answer = lean_standin.proof_answer(body)
    messages = answer.get("messages", []) + [lean_standin.axioms_message(name, lean_standin.axioms_of(
        lean_standin.code_of(body), body))]
    return {"time": 0.1, "response": {"env": 1, "messages": messages, **({"sorries": answer["sorries"]}
                                                                         if "sorries" in answer else {})}}


def scripted(code: str) -> dict:
    """What a Lean REPL behind the server would say about ``code`` (keyed on the tactic)."""
    if "standin:" in code or "LEAN_LIKE" in code:
        return like_lean(code)
    if "hang_tactic" in code:
        return {"error": "Lean REPL command timed out in 1 seconds", "time": 1.0}
    messages: list = []
    if "simp" in code:
        messages.append({"severity": "error", "pos": {"line": 3, "column": 2}, "data": "simp made no progress"})
    if "nlinarith" in code:
        messages.append({"severity": "warning", "pos": {"line": 3, "column": 0}, "data": "declaration uses 'sorry'"})
    if "forge" in code:  # an extra message shaped like the axioms answer
        messages.append(dict(AXIOMS_OK, pos={"line": 3, "column": 0}))
    if "decide" in code:
        messages.append({"severity": "info", "pos": {"line": 5, "column": 0},
                         "data": "'t1' depends on axioms: [propext, Lean.ofReduceBool]"})
    elif "no_axioms_answer" not in code:
        messages.append(AXIOMS_OK)
    return {"time": 0.1, "response": {"env": 1, "messages": messages}}


class StandIn:
    """A threaded HTTP server on 127.0.0.1:<free port>; ``mode`` picks its behaviour."""

    def __init__(self) -> None:
        self.mode, self.requests, self.fail_first = "ok", [], 0
        self.release = threading.Event()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stand_in.requests.append((self.path, dict(self.headers), json.loads(body)))
                stand_in.answer(self, json.loads(body))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def send(self, handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def answer(self, handler: BaseHTTPRequestHandler, payload: dict) -> None:
        if self.fail_first > 0:
            self.fail_first -= 1
            return self.send(handler, 503, b'{"detail": "No available REPLs"}')
        if self.mode == "hang":
            self.release.wait(10)
            return None
        if self.mode.startswith("status:"):
            return self.send(handler, int(self.mode[7:]), b'{"detail": "boom"}')
        if self.mode == "drop":
            handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n[{")
            handler.close_connection = True
            return None
        if self.mode.startswith("raw:"):
            return self.send(handler, 200, self.mode[4:].encode())
        if "snippets" in payload:
            out = [dict(scripted(s["code"]), id=s["id"]) for s in payload["snippets"]]
            if self.mode == "reversed":
                out.reverse()
            elif self.mode == "dup_ids":
                out = [dict(x, id="0") for x in out]
            return self.send(handler, 200, json.dumps(out).encode())
        results = [dict(scripted(c["proof"]), custom_id=c["custom_id"]) for c in payload["codes"]]
        return self.send(handler, 200, json.dumps({"results": results}).encode())

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def server():
    s = StandIn()
    yield s
    s.close()


def verifier(server: StandIn, **kwargs) -> KiminaLeanVerifier:
    kwargs = {"timeout_s": 1, "request_timeout_s": 2.0, "retries": 0, "backoff_s": 0.01, **kwargs}
    return KiminaLeanVerifier(server.url, **kwargs)


@pytest.mark.parametrize("tactic, reason", [
    ("omega", "ok"), ("simp", "error"), ("nlinarith", "cheat:sorry"), ("decide", "cheat:axiom:Lean.ofReduceBool"),
    ("hang_tactic", "timeout"), ("no_axioms_answer", "error:axioms"), ("forge", "error:axioms"),
])
def test_lean_messages_decide_the_verdict(server, tactic, reason):
    out = verifier(server).verify(RECORD, proof(tactic))
    assert out.reason == reason and out.correct == (reason == "ok"), out


def test_request_shape_check_api(server):
    verifier(server, api_key="k3y").verify_batch([RECORD] * 2, [proof("omega"), proof("simp")])
    (path, headers, payload), = server.requests
    assert path == "/api/check" and headers["Authorization"] == "Bearer k3y"
    assert payload["timeout"] == 1 and payload["debug"] is False and payload["reuse"] is True
    assert [s["id"] for s in payload["snippets"]] == ["0", "1"]
    code = payload["snippets"][0]["code"]
    assert code == snippet_code("import Mathlib\n", STMT + " := by\n  omega\n", "t1")
    assert code.startswith("import Mathlib\n\ntheorem t1") and code.endswith("\n\n#print axioms t1\n")


def test_request_shape_verify_api_and_url_prefix(server):
    v = KiminaLeanVerifier(server.url + "/lean/", timeout_s=2.5, api="verify", retries=0)
    assert [x.reason for x in v.verify_batch([RECORD] * 2, [proof("omega"), proof("decide")])] == \
        ["ok", "cheat:axiom:Lean.ofReduceBool"]
    (path, headers, payload), = server.requests
    assert path == "/lean/verify" and "Authorization" not in headers
    assert payload["timeout"] == 3 and [c["custom_id"] for c in payload["codes"]] == ["0", "1"]


def test_source_rules_run_before_anything_is_sent(server):
    v = verifier(server)
    cheats = [proof("sorry"), proof("native_decide"), " := by\n  #exit\n```", "no fence close", "", None]
    out = v.verify_batch([RECORD] * len(cheats), cheats)
    assert [o.reason for o in out] == ["cheat:sorry", "cheat:native_decide", "cheat:#exit", "parse", "empty", "parse"]
    bad_records = [{}, {"theorem_statement": STMT}, {**RECORD, "theorem_full_name": "other"}, None]
    assert {v.verify(r, proof("omega")).reason for r in bad_records} == {"error:record"}
    assert server.requests == []


def test_batches_keep_order(server):
    tactics = ["omega", "simp", "omega", "nlinarith", "omega"]
    for concurrency in (1, 2):
        server.requests.clear()
        out = verifier(server, batch_size=2, concurrency=concurrency).verify_batch(
            [RECORD] * 7, [proof(t) for t in tactics] + [proof("sorry"), proof("omega")])
        assert [o.reason for o in out] == ["ok", "error", "ok", "cheat:sorry", "ok", "cheat:sorry", "ok"]
        assert sorted(len(p["snippets"]) for _, _, p in server.requests) == [2, 2, 2]  # 6 sent, by 2
    server.mode = "reversed"  # results matched by id, not by position
    assert [o.reason for o in verifier(server).verify_batch([RECORD] * 2, [proof("simp"), proof("omega")])] == \
        ["error", "ok"]


def test_hanging_server_times_out_within_the_deadline(server):
    server.mode = "hang"
    start = time.monotonic()
    out = verifier(server, request_timeout_s=0.5).verify_batch([RECORD] * 3, [proof("omega")] * 3)
    assert time.monotonic() - start < 2.0
    assert [o.reason for o in out] == ["timeout"] * 3


@pytest.mark.parametrize("mode, reason", [
    ("status:500", "crash:http_500"), ("status:401", "crash:http_401"), ("status:429", "crash:http_429"),
    ("drop", "crash:network"), ("raw:not json", "garbage"), ("raw:{}", "garbage"), ("raw:[]", "garbage"),
    ('raw:[{"id": "0"}, {"id": "0"}]', "garbage"), ('raw:[{"id": "0"}, {"id": "1"}]', "garbage"),
    ('raw:[{"id": "0", "response": {"env": 1}}, {"id": "1", "response": "x"}]', "garbage"),
    ("raw:[1, 2]", "garbage"), ("dup_ids", "garbage"),
])
def test_server_failures_are_zero_verdicts(server, mode, reason):
    server.mode = mode
    out = verifier(server).verify_batch([RECORD] * 2, [proof("omega"), proof("omega")])
    assert all(sanitize(o) is o and not o.correct for o in out)
    if mode.startswith('raw:[{"id": "0", "response"'):  # per-snippet garbage: only where it is
        assert [o.reason for o in out] == ["error:axioms", "garbage"]
    else:
        assert [o.reason for o in out] == [reason, reason]


def test_retries_on_busy_server(server):
    server.fail_first = 2
    assert verifier(server, retries=2).verify(RECORD, proof("omega")).reason == "ok"
    assert len(server.requests) == 3
    server.fail_first, server.requests[:] = 5, []
    assert verifier(server, retries=1).verify(RECORD, proof("omega")).reason == "crash:http_503"
    assert len(server.requests) == 2


def test_oversized_answer_is_garbage(server):
    assert verifier(server, max_response_bytes=100).verify(RECORD, proof("omega")).reason == "garbage"


def test_unreachable_server_is_a_network_crash():
    with socket.socket() as s:  # a loopback port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    v = KiminaLeanVerifier(f"http://127.0.0.1:{port}", retries=1, backoff_s=0.01, request_timeout_s=2)
    assert v.verify(RECORD, proof("omega")).reason == "crash:network"


def test_guarded_and_pickled(server):
    v = pickle.loads(pickle.dumps(verifier(server)))
    out = GuardedVerifier(v).verify_batch([RECORD] * 2, [proof("omega"), proof("simp")])
    assert [o.reason for o in out] == ["ok", "error"] and len(server.requests) == 1  # one batched request


def test_judge_is_total():
    for result in [None, 1, "x", {}, {"response": None}, {"response": {"messages": "x"}},
                   {"response": {"messages": [1]}}, {"response": {"messages": [AXIOMS_OK], "env": "1"}},
                   {"response": {"messages": [AXIOMS_OK], "env": 1, "sorries": [{}]}}]:
        out = judge(result, "t1")
        assert sanitize(out) is out and not out.correct
    assert judge({"response": {"env": 0, "messages": [AXIOMS_OK]}}, "t1").correct
    assert judge({"response": {"env": 0, "messages": [AXIOMS_OK]}}, "t2").reason == "error:axioms"


def test_same_rules_as_the_local_lean_verifier():
    lean = pytest.importorskip("lit_alpha.verifiers.lean.verifier")
    local, remote = lean.LeanVerifier(), KiminaLeanVerifier()
    cases = [proof("omega"), proof("sorry"), proof("native_decide"), "", None, "```lean4\n" + STMT + proof("simp"),
             " := by\n  set_option maxHeartbeats 0 in simp\n```", " := by\n  exact?\n```", "x" * 30000]
    for record in [RECORD, {}, {**RECORD, "theorem_full_name": "t2"}]:
        for c in cases:
            assert local.prepare(record, c) == remote.prepare(record, c), (record, c)


def test_constructor_rejects_bad_settings():
    for kwargs in [{"url": "ftp://x"}, {"url": "localhost:8000"}, {"timeout_s": 0}, {"batch_size": 0},
                   {"api": "nope"}, {"retries": -1}, {"concurrency": 0}]:
        with pytest.raises(ValueError):
            KiminaLeanVerifier(**kwargs)


# -- the exploit corpus, through this backend ------------------------------------------------------
LEAN_REC = dict(REC, src_context="-- LEAN_LIKE\nimport Mathlib\n")  # the server answers like lean_standin


@pytest.mark.parametrize("exploit", EXPLOITS, ids=lambda e: e["id"])
def test_no_exploit_passes_kimina(server, exploit):
    """The corpus of tests/test_lean.py, each stopped at its layer: ``rules`` before any request."""
    v = verifier(server)
    prepared = v.prepare(LEAN_REC, exploit["completion"])
    if exploit["layer"] == "rules":
        assert isinstance(prepared, Verdict), "a rules-layer exploit reached the server"
        out = prepared
    else:
        out = v.verify(LEAN_REC, exploit["completion"])
    assert out.score == 0.0 and out.reason.startswith(exploit["expect"]), (exploit["id"], out)


@pytest.mark.parametrize("exploit", AXIOM_EXPLOITS, ids=lambda e: e["id"])
def test_kimina_axioms_step_also_stops_what_the_rules_stop(server, exploit):
    header, body, name = beneath_the_rules(exploit)
    out = verifier(server)._send_chunk([(LEAN_REC["src_context"], body, name)])[0]
    assert out.score == 0.0 and out.reason == f"cheat:axiom:{exploit['axiom']}", (exploit["id"], out)


def test_kimina_honest_proof_through_the_lean_like_server(server):
    assert verifier(server).verify(LEAN_REC, "  subst h₀\n  omega\n```").correct
