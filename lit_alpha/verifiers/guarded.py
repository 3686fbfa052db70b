"""Fault-tolerant verification: no verifier (a user's own included) can crash, hang or poison a step.

:class:`GuardedVerifier` wraps any :class:`~lit_alpha.verifiers.base.Verifier`. Every sample gets a
verdict; whatever goes wrong costs that sample a 0 verdict with a reason, counted and logged
(``verifier/<reason>_frac`` per step, ``verifier/faults_total`` over the run):

* ``crash``: the verifier raised (or its worker process died);
* ``garbage``: it returned something that is not a :class:`Verdict` with a score in [0, 1] and a
  text reason (NaN, 2.0, None, a string ...);
* ``timeout``: one sample took longer than ``timeout_s``.

With ``timeout_s == 0`` the verifier runs in-process (right for pure, bounded verifiers like
Countdown's: no process overhead). With ``timeout_s > 0`` each sample runs in a pool of worker
*processes* (a Python thread cannot be interrupted): a sample past its deadline is abandoned, its
worker killed and replaced. Workers are plain ``python -m lit_alpha.verifiers._worker`` processes
that receive the pickled verifier once; they die with the trainer.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import subprocess
import sys
import time
import weakref
from collections import Counter
from multiprocessing.connection import Connection, wait
from typing import Any, Mapping, Sequence

from lit_alpha.verifiers.base import Verdict, Verifier

log = logging.getLogger(__name__)
FAULTS = ("crash", "garbage", "timeout")


def sanitize(out: Any) -> Verdict:
    """``out`` if it is a well-formed verdict, else ``Verdict(0, "garbage")``."""
    try:
        ok = (
            isinstance(out, Verdict)
            and isinstance(out.reason, str)
            and (out.answer is None or isinstance(out.answer, str))
            and math.isfinite(float(out.score))
            and 0.0 <= float(out.score) <= 1.0
        )
    except Exception:  # noqa: BLE001 - a score whose float() raises is garbage too
        ok = False
    return out if ok else Verdict(0.0, "garbage")


def verify_one(verifier: Verifier, record: Mapping[str, Any], completion: str) -> Verdict:
    """``verifier.verify`` made total: an exception is ``crash:<type>``, a malformed result ``garbage``."""
    try:
        out = verifier.verify(record, completion)
    except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
        return Verdict(0.0, f"crash:{type(exc).__name__}")
    return sanitize(out)


class _Worker:
    """One worker process and the two pipe ends that talk to it."""

    def __init__(self, payload: bytes) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lit_alpha.verifiers._worker", str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.send_conn = Connection(os.dup(self.proc.stdin.fileno()), readable=False)
        self.recv_conn = Connection(os.dup(self.proc.stdout.fileno()), writable=False)
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.send_conn.send_bytes(payload)
        self.job: int | None = None  # index of the sample it is working on
        self.deadline = math.inf

    def kill(self) -> None:
        for conn in (self.send_conn, self.recv_conn):
            try:
                conn.close()
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def _kill_all(workers: list[_Worker]) -> None:
    for w in workers:
        w.kill()
    workers.clear()


class GuardedVerifier:
    """Run ``verifier`` so that every sample gets a verdict, whatever the verifier does.

    Args:
        verifier: the task's verifier.
        timeout_s: per-sample time limit in seconds; 0 runs in-process without a limit.
        workers: worker processes when ``timeout_s > 0``.
    """

    def __init__(self, verifier: Verifier, timeout_s: float = 0.0, workers: int = 1) -> None:
        if not timeout_s >= 0:
            raise ValueError(f"timeout_s must be >= 0, got {timeout_s}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.verifier, self.timeout_s, self.n_workers = verifier, float(timeout_s), workers
        self.faults: Counter[str] = Counter()  # cumulative, by reason (crash/garbage/timeout)
        self._workers: list[_Worker] = []
        self._payload: bytes | None = None
        self._finalizer = weakref.finalize(self, _kill_all, self._workers)

    def __getstate__(self) -> dict[str, Any]:  # copies and pickles carry no processes
        state = dict(self.__dict__)
        state.update(_workers=[], _payload=None, _finalizer=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._finalizer = weakref.finalize(self, _kill_all, self._workers)

    # -- public ----------------------------------------------------------------------------
    def verify_batch(self, records: Sequence[Mapping[str, Any]], completions: Sequence[str]) -> list[Verdict]:
        """One verdict per ``(record, completion)``, in order; never raises for a verifier's fault."""
        if len(records) != len(completions):
            raise ValueError(f"{len(records)} records for {len(completions)} completions")
        if not records:
            return []
        verdicts = self._in_process(records, completions) if self.timeout_s == 0 else self._pooled(records, completions)
        self._count(verdicts, records)
        return verdicts

    def close(self) -> None:
        """Stop the worker processes (they are restarted on the next pooled call) and whatever the
        wrapped verifier holds open itself (e.g. the Lean REPL pool)."""
        _kill_all(self._workers)
        inner_close = getattr(self.verifier, "close", None)
        if callable(inner_close):
            try:
                inner_close()
            except Exception:  # noqa: BLE001 - closing must not fail a teardown
                pass

    def state_dict(self) -> dict[str, int]:
        return dict(self.faults)

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.faults = Counter({str(k): int(v) for k, v in state.items()})

    @property
    def total_faults(self) -> int:
        return sum(self.faults.values())

    # -- in-process ------------------------------------------------------------------------
    def _in_process(self, records: Sequence[Mapping[str, Any]], completions: Sequence[str]) -> list[Verdict]:
        try:  # a batched verifier may override verify_batch; trust nothing it returns
            out = list(self.verifier.verify_batch(records, completions))
            if len(out) == len(records):
                return [sanitize(v) for v in out]
        except Exception:  # noqa: BLE001 - fall back to one sample at a time
            pass
        return [verify_one(self.verifier, r, c) for r, c in zip(records, completions)]

    # -- pooled ----------------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        if self._payload is None:
            self._payload = pickle.dumps(self.verifier)
        return _Worker(self._payload)

    def _pooled(self, records: Sequence[Mapping[str, Any]], completions: Sequence[str]) -> list[Verdict]:
        while len(self._workers) < self.n_workers:
            self._workers.append(self._spawn())
        results: list[Verdict | None] = [None] * len(records)
        todo = list(range(len(records)))[::-1]
        while todo or any(w.job is not None for w in self._workers):
            for w in self._workers:
                if w.job is None and todo:
                    self._dispatch(w, todo.pop(), records, completions, results)
            busy = [w for w in self._workers if w.job is not None]
            if not busy:
                continue
            wait_s = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            ready = wait([w.recv_conn for w in busy], timeout=wait_s)
            for i, w in enumerate(list(self._workers)):
                if w.job is None:
                    continue
                if w.recv_conn in ready:
                    try:
                        index, out = pickle.loads(w.recv_conn.recv_bytes())
                        results[w.job] = sanitize(out) if index == w.job else Verdict(0.0, "garbage")
                        w.job, w.deadline = None, math.inf
                        continue
                    except Exception:  # noqa: BLE001 - EOF or a broken message: the worker died mid-sample
                        results[w.job] = Verdict(0.0, "crash:WorkerDied")
                elif time.monotonic() >= w.deadline:
                    results[w.job] = Verdict(0.0, "timeout")
                else:
                    continue
                w.kill()
                self._workers[i] = self._spawn()
        return [sanitize(v) for v in results]

    def _dispatch(self, w: _Worker, index: int, records, completions, results: list) -> None:
        try:
            message = pickle.dumps((index, records[index], completions[index]))
        except Exception as exc:  # noqa: BLE001 - an unpicklable record cannot be verified out of process
            results[index] = Verdict(0.0, f"crash:{type(exc).__name__}")
            return
        try:
            w.send_conn.send_bytes(message)
        except OSError:  # died while idle: replace it and try once more
            w.kill()
            self._workers[self._workers.index(w)] = w = self._spawn()
            w.send_conn.send_bytes(message)
        w.job, w.deadline = index, time.monotonic() + self.timeout_s

    # -- accounting ------------------------------------------------------------------------
    def _count(self, verdicts: list[Verdict], records: Sequence[Mapping[str, Any]]) -> None:
        for v, r in zip(verdicts, records):
            kind = v.reason.split(":")[0]
            if kind in FAULTS:
                if kind not in self.faults:
                    log.warning("verifier %s: %s on problem %r (verdict 0; counted in verifier/%s_frac)",
                                type(self.verifier).__name__, v.reason, r.get("id") if hasattr(r, "get") else None,
                                kind)
                self.faults[kind] += 1
