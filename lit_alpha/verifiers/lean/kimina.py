"""``KiminaLeanVerifier``: Lean 4 proofs checked by a remote kimina-lean-server, under the same rules.

`kimina-lean-server <https://github.com/project-numina/kimina-lean-server>`_ runs pools of Lean REPLs
behind an HTTP API, so verification can be spread over other machines. This backend keeps every rule
of :class:`~lit_alpha.verifiers.lean.verifier.LeanVerifier` and only replaces *where* Lean runs:

1. extraction and source rules run locally (:func:`~lit_alpha.verifiers.lean.rules.extract_proof`,
   :func:`~lit_alpha.verifiers.lean.rules.check_source`): a hostile completion never leaves the machine;
2. the surviving proofs of a batch are sent in requests of at most ``batch_size`` snippets, each
   snippet being ``<src_context>`` + the statement and proof + ``#print axioms <theorem_full_name>``;
3. Lean's answer is judged locally: the ``#print axioms`` message is taken out (it must be the last
   message, and the only one of its shape), the rest must pass
   :func:`~lit_alpha.verifiers.lean.rules.accept_response` (no error, no ``sorry``, no "failed"
   warning) and the axioms :func:`~lit_alpha.verifiers.lean.rules.check_axioms` (only
   :data:`~lit_alpha.verifiers.lean.rules.ALLOWED_AXIOMS`).

Wire format (kimina-lean-server, ``app/schemas.py``): ``api="check"`` posts to ``<url>/api/check``::

    {"snippets": [{"id": "0", "code": "..."}], "timeout": 60, "debug": false, "reuse": true}
    -> [{"id": "0", "time": 1.2, "error": null, "response": {"env": 0, "messages": [...], "sorries": [...]}}]

``api="verify"`` uses the older endpoint ``<url>/verify`` (``{"codes": [{"custom_id", "proof"}],
"timeout", "infotree_type", "disable_cache"}`` -> ``{"results": [{"custom_id", "error", "response"}]}``).
``api_key`` is sent as ``Authorization: Bearer <key>``.

Failures are verdicts, never exceptions: a snippet the server timed out is ``timeout``; a request
past its deadline (``request_timeout_s``, a total bound: connect, send and every read), is ``timeout``
for each snippet in it; an unreachable server or a broken connection ``crash:network``; an HTTP
error status ``crash:http_<code>`` (429/502/503/504 and network errors are retried ``retries`` times
with exponential back-off, inside the deadline); a body that is not the JSON above, a missing or
repeated id, ``garbage``. Only the standard library is used (``http.client``).
"""

from __future__ import annotations

import http.client
import json
import math
import socket
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping, Sequence

from lit_alpha.verifiers.base import Verdict, Verifier
from lit_alpha.verifiers.lean import rules
from lit_alpha.verifiers.lean.verifier import prepare_all

RETRY_STATUS = (429, 502, 503, 504)
APIS = {"check": "/api/check", "verify": "/verify"}
Job = tuple[str, str, str]  # (header, statement + proof, theorem name)


class _RequestFailed(Exception):
    """A whole request failed; ``reason`` is the verdict reason for every snippet in it."""

    def __init__(self, reason: str, retry: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.retry = reason, retry


def snippet_code(header: str, body: str, name: str) -> str:
    """The Lean code sent for one proof: header, statement and proof, then the axioms query."""
    parts = [header.rstrip(), body.rstrip(), rules.axioms_command(name)]
    return "\n\n".join(p for p in parts if p) + "\n"


def judge(result: Any, name: str) -> Verdict:
    """The verdict for one snippet's result (``{"error", "response"}``) from the server."""
    if not isinstance(result, Mapping):
        return Verdict(0.0, "garbage")
    error = result.get("error")
    if error:
        text = str(error).lower()
        return Verdict(0.0, "timeout" if "timed out" in text or "timeout" in text else "error:server")
    response = result.get("response")
    if not isinstance(response, Mapping):
        return Verdict(0.0, "garbage")
    messages = response.get("messages", [])
    if not isinstance(messages, list) or not messages:
        return Verdict(0.0, "garbage" if not isinstance(messages, list) else "error:axioms")
    shaped = [i for i, m in enumerate(messages) if rules.parse_axioms([m], name) is not None]
    if shaped != [len(messages) - 1]:  # exactly one axioms answer, and it is the last message
        ok, why = rules.accept_messages(messages)
        return Verdict(0.0, why if not ok else "error:axioms")
    ok, why = rules.accept_response(dict(response, messages=messages[:-1]))
    if not ok:
        return Verdict(0.0, why)
    bad = rules.check_axioms(rules.parse_axioms(messages[-1:], name))
    return Verdict(0.0, bad) if bad else Verdict(1.0, "ok")


class KiminaLeanVerifier(Verifier):
    """Whole-proof Lean 4 verifier through a kimina-lean-server (records as for ``LeanVerifier``:
    ``theorem_statement``, ``theorem_full_name``, ``src_context``).

    Args:
        url: the server's base URL, ``http://host:port`` (or https).
        timeout_s: per-proof time limit given to the server (whole seconds, rounded up); the server
            applies it to importing a header too, the first time a REPL sees that header.
        batch_size: proofs per HTTP request.
        request_timeout_s: total time limit of one request; None: ``2 * timeout_s + 30``. A server
            with fewer free REPLs than ``batch_size`` queues proofs: allow about
            ``timeout_s * ceil(batch_size / REPLs)``.
        concurrency: requests in flight at once.
        retries: extra tries of a request that failed on the network or with 429/502/503/504.
        backoff_s: first back-off between tries (doubled each time).
        api: ``check`` (``/api/check``) or ``verify`` (the older ``/verify``).
        api_key: sent as a bearer token when given.
        max_chars: longest proof block accepted (characters).
        max_response_bytes: a longer response body is ``garbage``.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        timeout_s: float = 60.0,
        batch_size: int = 32,
        request_timeout_s: float | None = None,
        concurrency: int = 1,
        retries: int = 2,
        backoff_s: float = 1.0,
        api: str = "check",
        api_key: str | None = None,
        max_chars: int = rules.DEFAULT_MAX_CHARS,
        max_response_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"url must be http(s)://host[:port][/prefix], got {url!r}")
        if not timeout_s > 0 or batch_size < 1 or concurrency < 1 or retries < 0 or backoff_s < 0:
            raise ValueError("timeout_s must be > 0, batch_size and concurrency >= 1, retries and backoff_s >= 0")
        if api not in APIS:
            raise ValueError(f"api must be one of {sorted(APIS)}, got {api!r}")
        if max_chars < 1 or max_response_bytes < 1:
            raise ValueError("max_chars and max_response_bytes must be >= 1")
        self.url, self.timeout_s, self.batch_size = url.rstrip("/"), float(timeout_s), int(batch_size)
        self.request_timeout_s = 2 * self.timeout_s + 30 if request_timeout_s is None else float(request_timeout_s)
        self.concurrency, self.retries, self.backoff_s = int(concurrency), int(retries), float(backoff_s)
        self.api, self.api_key = api, api_key
        self.max_chars, self.max_response_bytes = int(max_chars), int(max_response_bytes)

    # -- the pure part: the same rules as LeanVerifier --------------------------------------------
    def prepare(self, record: Mapping[str, Any], completion: Any) -> Verdict | Job:
        """A final verdict, or the ``(header, body, name)`` job to send (as ``LeanVerifier.prepare``)."""
        job, reason = rules.record_job(record, completion, self.max_chars)
        return job if job is not None else Verdict(0.0, reason)

    # -- Verifier ---------------------------------------------------------------------------------
    def check(self, record: Mapping[str, Any], completion: str) -> Verdict:
        return self.verify_batch([record], [completion])[0]

    def verify_batch(self, records: Sequence[Mapping[str, Any]], completions: Sequence[str]) -> list[Verdict]:
        if len(records) != len(completions):
            raise ValueError(f"{len(records)} records for {len(completions)} completions")
        out, jobs, where = prepare_all(self.prepare, records, completions)
        chunks = [jobs[i : i + self.batch_size] for i in range(0, len(jobs), self.batch_size)]
        if len(chunks) > 1 and self.concurrency > 1:
            with ThreadPoolExecutor(min(self.concurrency, len(chunks))) as pool:
                answers = list(pool.map(self._send_chunk, chunks))
        else:
            answers = [self._send_chunk(chunk) for chunk in chunks]
        for i, v in zip(where, (v for chunk in answers for v in chunk)):
            out[i] = v
        return [v if v is not None else Verdict(0.0, "crash:lost") for v in out]

    # -- HTTP -------------------------------------------------------------------------------------
    def payload(self, chunk: Sequence[Job]) -> dict[str, Any]:
        """The JSON request for ``chunk`` (snippet ids are the positions ``"0"``, ``"1"`` ...)."""
        timeout = max(1, math.ceil(self.timeout_s))
        codes = [snippet_code(*job) for job in chunk]
        if self.api == "check":
            return {"snippets": [{"id": str(i), "code": c} for i, c in enumerate(codes)],
                    "timeout": timeout, "debug": False, "reuse": True}
        return {"codes": [{"custom_id": str(i), "proof": c} for i, c in enumerate(codes)],
                "timeout": timeout, "infotree_type": None, "disable_cache": False}

    def _send_chunk(self, chunk: Sequence[Job]) -> list[Verdict]:
        try:
            body = self._post(self.payload(chunk))
            results = self._results(body, len(chunk))
        except _RequestFailed as err:
            return [Verdict(0.0, err.reason)] * len(chunk)
        except Exception as exc:  # noqa: BLE001 - a bug here must cost verdicts, not the run
            return [Verdict(0.0, f"crash:{type(exc).__name__}")] * len(chunk)
        return [judge(results[str(i)], name) for i, (_, _, name) in enumerate(chunk)]

    def _results(self, body: bytes, n: int) -> dict[str, Any]:
        """Per-snippet results by id; ``_RequestFailed("garbage")`` unless exactly ids 0..n-1."""
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise _RequestFailed("garbage") from None
        if self.api == "verify":
            data = data.get("results") if isinstance(data, dict) else None
            key = "custom_id"
        else:
            key = "id"
        if not isinstance(data, list) or len(data) != n or not all(isinstance(x, dict) for x in data):
            raise _RequestFailed("garbage")
        by_id = {str(x.get(key)): x for x in data}
        if set(by_id) != {str(i) for i in range(n)}:
            raise _RequestFailed("garbage")
        return by_id

    def _post(self, payload: dict[str, Any]) -> bytes:
        """POST ``payload``; the body of a 200 answer. Retries, then raises :class:`_RequestFailed`."""
        deadline = time.monotonic() + self.request_timeout_s
        data = json.dumps(payload).encode()
        tries = 0
        while True:
            try:
                return self._post_once(data, deadline)
            except _RequestFailed as err:
                tries += 1
                wait = self.backoff_s * 2 ** (tries - 1)
                if not err.retry or tries > self.retries or time.monotonic() + wait >= deadline:
                    raise
                time.sleep(wait)

    def _post_once(self, data: bytes, deadline: float) -> bytes:
        parts = urllib.parse.urlsplit(self.url)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _RequestFailed("timeout")
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.hostname, parts.port, timeout=remaining)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            conn.request("POST", parts.path + APIS[self.api], body=data, headers=headers)
            self._settimeout(conn, deadline)
            resp = conn.getresponse()
            chunks, size = [], 0
            while True:
                self._settimeout(conn, deadline)
                piece = resp.read(1 << 16)
                if not piece:
                    break
                size += len(piece)
                if size > self.max_response_bytes:
                    raise _RequestFailed("garbage")
                chunks.append(piece)
            if resp.length:  # the connection closed before the announced length
                raise _RequestFailed("crash:network", retry=True)
            if resp.status != 200:
                raise _RequestFailed(f"crash:http_{resp.status}", retry=resp.status in RETRY_STATUS)
            return b"".join(chunks)
        except (socket.timeout, TimeoutError):
            raise _RequestFailed("timeout") from None
        except (OSError, http.client.HTTPException):
            raise _RequestFailed("crash:network", retry=True) from None
        finally:
            conn.close()

    @staticmethod
    def _settimeout(conn: http.client.HTTPConnection, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _RequestFailed("timeout")
        if conn.sock is not None:
            conn.sock.settimeout(remaining)
