"""A pool of Lean REPL workers: each job is checked on one of them; a failed worker is replaced.

A job is ``(header, body, theorem_name)``. A worker imports each header once (its ``env`` is cached),
sends the body in that env, applies :func:`~lit_alpha.verifiers.lean.rules.accept_response`, then
``#print axioms <name>`` in the body's env and :func:`~lit_alpha.verifiers.lean.rules.check_axioms`.
The per-proof ``timeout_s`` covers both requests; the header import has its own ``header_timeout_s``.

A worker that times out, exits, prints something that is not a JSON answer, or dies of its address-
space limit is killed (its whole process group) and replaced before its next job; the proof gets
``Verdict(0, "timeout" | "crash:<what>")`` and :attr:`LeanPool.counters` counts it (the first of each
kind is logged). A worker is also recycled after ``max_proofs`` proofs, because the REPL keeps every
environment it has made. Each worker slot is a long-lived daemon thread driving one process (the work
happens in Lean); :meth:`LeanPool.close` (also at interpreter exit, on garbage collection and on
Ctrl-C inside :meth:`LeanPool.run`) kills every process group, and each process gets SIGKILL if the
trainer dies (PR_SET_PDEATHSIG), so no process outlives the trainer.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from collections import Counter
from typing import Sequence

from lit_alpha.verifiers.base import Verdict
from lit_alpha.verifiers.lean import rules
from lit_alpha.verifiers.lean.repl import HeaderError, LeanREPL, REPLError

log = logging.getLogger(__name__)
Job = tuple[str, str, str]  # (header, statement + proof, theorem name)


def _fault(exc: REPLError) -> Verdict:
    """``timeout``, ``crash`` (exit, EOF, broken pipe) or ``crash:garbage`` (not a JSON answer)."""
    return Verdict(0.0, {"timeout": "timeout", "crash": "crash"}.get(exc.kind, f"crash:{exc.kind}"))


def _close_all(slots: list) -> None:
    for i, repl in enumerate(slots):
        if repl is not None:
            repl.kill()
            slots[i] = None


class _Batch:
    """The verdicts of one :meth:`LeanPool.run` call, filled in by the worker threads."""

    def __init__(self, n: int) -> None:
        self.results: list[Verdict | None] = [None] * n
        self.left, self.cancelled = n, False
        self.event = threading.Event()
        self._lock = threading.Lock()

    def finish(self, i: int, verdict: Verdict) -> None:
        with self._lock:
            self.results[i] = verdict
            self.left -= 1
            if self.left == 0:
                self.event.set()


class LeanPool:
    """``workers`` REPL processes started on demand.

    Args:
        cmd: REPL command line.
        cwd: Lean project directory.
        workers: number of REPL processes.
        timeout_s: per-proof limit (proof + axiom query).
        header_timeout_s: limit for importing a header in a fresh worker.
        memory_mb: address-space limit per worker (0: none).
        max_proofs: recycle a worker after this many proofs (0: never).
    """

    def __init__(self, cmd: str | Sequence[str], cwd: str | None, workers: int = 1, timeout_s: float = 60.0,
                 header_timeout_s: float = 600.0, memory_mb: int = 0, max_proofs: int = 0) -> None:
        self.cmd, self.cwd, self.n = cmd, cwd, int(workers)
        self.timeout_s, self.header_timeout_s = float(timeout_s), float(header_timeout_s)
        self.memory_mb, self.max_proofs = int(memory_mb), int(max_proofs)
        self.slots: list[LeanREPL | None] = [None] * self.n
        self.counters: Counter[str] = Counter()  # start/recycle/timeout/crash/garbage, over the pool's life
        self._bad_headers: dict[str, str] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._finalizer = weakref.finalize(self, _close_all, self.slots)

    # -- public --------------------------------------------------------------------------------
    def run(self, jobs: Sequence[Job]) -> list[Verdict]:
        """One verdict per job, in order. Never raises for a worker's fault (Ctrl-C propagates)."""
        batch = _Batch(len(jobs))
        if not jobs:
            return []
        self._start_threads()
        for i, job in enumerate(jobs):
            self._queue.put((batch, i, job))
        try:
            while not batch.event.wait(0.2):  # short waits keep the main thread responsive to Ctrl-C
                pass
        except BaseException:
            batch.cancelled = True
            self.close()
            raise
        return [v if v is not None else Verdict(0.0, "crash:lost") for v in batch.results]

    def close(self) -> None:
        """Kill every worker's process group (they restart on the next :meth:`run`)."""
        while True:  # pending jobs of an interrupted batch are dropped
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        _close_all(self.slots)

    # -- one worker slot ---------------------------------------------------------------------------
    def _start_threads(self) -> None:
        # One long-lived thread per slot: a REPL is started by the thread that drives it, and lives
        # while that thread does (PR_SET_PDEATHSIG fires when the *thread* that forked it exits).
        while len(self._threads) < self.n:
            t = threading.Thread(target=self._serve, args=(len(self._threads),), daemon=True,
                                 name=f"lean-worker-{len(self._threads)}")
            self._threads.append(t)
            t.start()

    def _serve(self, slot: int) -> None:
        while True:
            batch, i, job = self._queue.get()
            if batch.cancelled:
                continue
            try:
                verdict = self._check(slot, *job)
            except Exception as exc:  # noqa: BLE001 - a bug here must still give a verdict
                self._fail(slot, f"crash:{type(exc).__name__}")
                verdict = Verdict(0.0, f"crash:{type(exc).__name__}")
            batch.finish(i, verdict)

    def _worker(self, slot: int) -> LeanREPL:
        repl = self.slots[slot]
        if repl is None or not repl.alive:
            if repl is not None:  # died while idle
                repl.kill()
                self._count("crash")
            repl = self.slots[slot] = LeanREPL(self.cmd, cwd=self.cwd, memory_mb=self.memory_mb)
            self._count("start")
        return repl

    def _fail(self, slot: int, reason: str) -> None:
        repl = self.slots[slot]
        if repl is not None:
            repl.kill()
            self.slots[slot] = None
        self._count(reason.split(":")[0])

    def _count(self, kind: str) -> None:
        with self._lock:
            first = kind not in self.counters
            self.counters[kind] += 1
        if first and kind not in ("start", "recycle"):
            log.warning("lean: first worker %s (verdict 0, worker replaced; counted in LeanPool.counters)", kind)

    def _check(self, slot: int, header: str, body: str, name: str) -> Verdict:
        if header in self._bad_headers:
            return Verdict(0.0, "crash:header")
        try:
            repl = self._worker(slot)
        except OSError as exc:
            self._count("crash")
            log.error("lean: cannot start the REPL %r in %r: %s", self.cmd, self.cwd, exc)
            return Verdict(0.0, f"crash:start:{type(exc).__name__}")
        try:
            env = repl.header_env(header, self.header_timeout_s)
        except HeaderError as exc:
            self._bad_headers[header] = str(exc)
            log.error("lean: the header does not elaborate in %s (every proof under it gets 0): %s\n%s",
                      self.cwd, exc, header)
            return Verdict(0.0, "crash:header")
        except REPLError as exc:
            self._fail(slot, exc.kind)
            return _fault(exc)
        deadline = time.monotonic() + self.timeout_s
        try:
            out = repl.request({"cmd": body, "env": env}, self.timeout_s)
            repl.proofs += 1
            ok, why = rules.accept_response(out)
            if not ok:
                verdict = Verdict(0.0, why)
            else:
                left = max(0.001, deadline - time.monotonic())
                ax = repl.request({"cmd": rules.axioms_command(name), "env": out["env"]}, left)
                bad = rules.check_axioms(rules.parse_axioms(ax.get("messages"), name))
                verdict = Verdict(0.0, bad) if bad else Verdict(1.0, "ok")
        except REPLError as exc:
            self._fail(slot, exc.kind)
            return _fault(exc)
        if self.max_proofs and repl.proofs >= self.max_proofs:
            repl.kill()
            self.slots[slot] = None
            self._count("recycle")
        return verdict
