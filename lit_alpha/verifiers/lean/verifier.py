"""``LeanVerifier``: a completion is correct iff Lean 4 accepts it as a proof of the given statement.

Order of checks for each ``(record, completion)`` (the first failure decides, verdict 0):

1. extraction: the last complete ```` ```lean4 ```` block of ``"```lean4\\n" + statement + completion``
   (the prompt ends inside an open block right after the statement, so a completion that just
   continues the proof and closes the block is that block; one that writes a whole new block is the
   new block), at most ``max_chars`` long → else ``parse``;
2. source rules (:func:`~lit_alpha.verifiers.lean.rules.check_source`) → ``cheat:<what>``;
3. Lean, in a worker of the pool, in the env of the record's header (``src_context``): the statement
   and the proof only (text before the statement is never compiled) → ``error``, ``cheat:sorry``,
   ``timeout``, ``crash:<what>``;
4. ``#print axioms <theorem_full_name>`` in the proof's env: only ``propext``, ``Classical.choice``,
   ``Quot.sound`` → else ``cheat:axiom:<name>``.

Steps 1-2 are pure and take microseconds, so hostile text never reaches Lean. A correct verdict's
``answer`` is the proof without comments and with whitespace collapsed (distinct-correct counts). ``verify_batch`` sends
every surviving proof of a batch to the pool at once.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from lit_alpha.errors import UserError
from lit_alpha.verifiers.base import Verdict, Verifier
from lit_alpha.verifiers.lean import rules
from lit_alpha.verifiers.lean.repl import split_cmd

log = logging.getLogger(__name__)
FAULT_KINDS = ("timeout", "crash", "garbage")

REPL_URL = "https://github.com/leanprover-community/repl"
INSTALL_HINT = (
    "install elan (https://github.com/leanprover/elan), make a Lean 4 project with Mathlib and the REPL "
    f"(lakefile: `require mathlib from git \"https://github.com/leanprover-community/mathlib4\"` and "
    f"`require REPL from git \"{REPL_URL}\"` at tags matching your Lean version), run `lake exe cache get && "
    "lake build`, and set data.task.init_args.project_dir to it (see docs/lean.md)"
)


class LeanVerifier(Verifier):
    """Whole-proof Lean 4 verifier through the leanprover-community REPL.

    Args:
        project_dir: the Lean 4 project (with Mathlib and the REPL) the REPL runs in.
        repl_cmd: the REPL command line, run in ``project_dir`` (a stand-in executable in tests).
        workers: REPL worker processes.
        timeout_s: per-proof time limit (the proof and the axiom query), seconds.
        header_timeout_s: time limit for a fresh worker to import a header (``import Mathlib`` ...).
        memory_mb: address-space limit (RLIMIT_AS) of each worker process tree, MiB (0: none).
        max_chars: longest proof block accepted (characters).
        max_proofs_per_worker: recycle a worker after this many proofs (the REPL keeps every env).
    """

    def __init__(
        self,
        project_dir: str | None = None,
        repl_cmd: str = "lake exe repl",
        workers: int = 4,
        timeout_s: float = 60.0,
        header_timeout_s: float = 600.0,
        memory_mb: int = 16384,
        max_chars: int = rules.DEFAULT_MAX_CHARS,
        max_proofs_per_worker: int = 500,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if not timeout_s > 0 or not header_timeout_s > 0:
            raise ValueError(f"timeout_s and header_timeout_s must be > 0, got {timeout_s}, {header_timeout_s}")
        if memory_mb < 0 or max_chars < 1 or max_proofs_per_worker < 0:
            raise ValueError("memory_mb and max_proofs_per_worker must be >= 0, max_chars >= 1")
        self.project_dir = None if project_dir is None else str(project_dir)
        self.repl_cmd, self.workers = repl_cmd, int(workers)
        self.timeout_s, self.header_timeout_s = float(timeout_s), float(header_timeout_s)
        self.memory_mb, self.max_chars = int(memory_mb), int(max_chars)
        self.max_proofs_per_worker = int(max_proofs_per_worker)
        self._pool = None

    # -- set-up --------------------------------------------------------------------------------
    def preflight(self, field: str = "project_dir") -> None:
        """Raise :class:`~lit_alpha.errors.UserError` naming what to install if Lean cannot run here."""
        if self.project_dir is None:
            raise UserError(f"{field}: not set; {INSTALL_HINT}")
        proj = Path(self.project_dir).expanduser()
        if not proj.is_dir():
            raise UserError(f"{field}: {proj} is not a directory; {INSTALL_HINT}")
        if not any((proj / f).is_file() for f in ("lakefile.lean", "lakefile.toml")):
            raise UserError(f"{field}: {proj} is not a Lean 4 (lake) project: no lakefile.lean/lakefile.toml; "
                            f"{INSTALL_HINT}")
        argv = split_cmd(self.repl_cmd)
        if not argv:
            raise UserError("repl_cmd: empty")
        exe = argv[0]
        found = shutil.which(exe) or (os.access(proj / exe, os.X_OK) and str(proj / exe))
        if not found:
            what = "`lake` (Lean's build tool)" if Path(exe).name == "lake" else f"the REPL executable {exe!r}"
            raise UserError(f"repl_cmd: {what} not found on PATH; {INSTALL_HINT}")
        if argv[1:3] == ["exe", "repl"] and not _has_repl(proj):
            raise UserError(f"{field}: {proj} does not require the Lean REPL ({REPL_URL}); add it to the "
                            f"lakefile and run `lake update REPL && lake build repl`; {INSTALL_HINT}")

    @property
    def pool(self):
        if self._pool is None:
            from lit_alpha.verifiers.lean.pool import LeanPool

            self._pool = LeanPool(self.repl_cmd, self.project_dir, self.workers, self.timeout_s,
                                  self.header_timeout_s, self.memory_mb, self.max_proofs_per_worker)
        return self._pool

    def close(self) -> None:
        """Stop the REPL workers; the next check starts a fresh pool (validate → fit reuses us)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __getstate__(self) -> dict[str, Any]:  # copies and pickles carry no processes
        return dict(self.__dict__, _pool=None)

    # -- checking ------------------------------------------------------------------------------
    def prepare(self, record: Mapping[str, Any], completion: Any) -> Verdict | tuple[str, str, str]:
        """The pure part: a final verdict, or the ``(header, body, name)`` job to send to Lean."""
        job, reason = rules.record_job(record, completion, self.max_chars)
        return job if job is not None else Verdict(0.0, reason)

    def _run(self, jobs: list) -> list[Verdict]:
        if self.project_dir is None:
            return [Verdict(0.0, "crash:no_project")] * len(jobs)
        pool = self.pool
        before = sum(pool.counters[k] for k in FAULT_KINDS)
        out = pool.run(jobs)
        if sum(pool.counters[k] for k in FAULT_KINDS) > before:
            log.info("lean workers over the run: %s", dict(pool.counters))
        return out

    def check(self, record: Mapping[str, Any], completion: str) -> Verdict:
        prepared = self.prepare(record, completion)
        if isinstance(prepared, Verdict):
            return prepared
        return with_answer(self._run([prepared])[0], prepared[1])

    def verify_batch(self, records: Sequence[Mapping[str, Any]], completions: Sequence[str]) -> list[Verdict]:
        if len(records) != len(completions):
            raise ValueError(f"{len(records)} records for {len(completions)} completions")
        out, jobs, where = prepare_all(self.prepare, records, completions)
        if jobs:
            for i, job, v in zip(where, jobs, self._run(jobs)):
                out[i] = with_answer(v, job[1])
        return [v if v is not None else Verdict(0.0, "crash:lost") for v in out]


def prepare_all(prepare, records: Sequence[Mapping[str, Any]], completions: Sequence[str]):
    """Run ``prepare`` on every (record, completion): a row rejected before Lean (or whose prepare
    raised: a ``crash:`` verdict, never an exception) gets its Verdict now, the others become jobs.

    Returns ``(out, jobs, where)``: ``out[i]`` a Verdict or None, ``jobs[j]`` belongs to ``out[where[j]]``.
    Shared by the REPL and kimina backends."""
    out: list[Verdict | None] = []
    jobs: list[Any] = []
    where: list[int] = []
    for r, c in zip(records, completions):
        try:
            p = prepare(r, c)
        except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
            p = Verdict(0.0, f"crash:{type(exc).__name__}")
        if isinstance(p, Verdict):
            out.append(p)
        else:
            where.append(len(out))
            out.append(None)
            jobs.append(p)
    return out, jobs, where


def canonical_proof(body: str) -> str:
    """The proof without comments, whitespace runs collapsed: one text per trivially-equal proof
    (the ``answer`` of a correct verdict, for distinct-correct counts)."""
    code, _ = rules.strip_comments(body)
    return " ".join((code if code is not None else body).split())


def with_answer(verdict: Verdict, body: str) -> Verdict:
    return Verdict(verdict.score, verdict.reason, canonical_proof(body)) if verdict.correct else verdict


def _has_repl(proj: Path) -> bool:
    """Best effort: does the lake project require (or is it) the leanprover-community REPL?"""
    for f in ("lake-manifest.json", "lakefile.lean", "lakefile.toml"):
        try:
            text = (proj / f).read_text(errors="replace")[:1_000_000]
        except OSError:
            continue
        if f.endswith(".json"):
            try:
                names = [str(p.get("name", "")).lower() for p in json.loads(text).get("packages", [])]
            except (ValueError, AttributeError):
                names = []
            if "repl" in names:
                return True
        elif "leanprover-community/repl" in text or 'lean_exe repl' in text or "name = \"repl\"" in text.lower():
            return True
    return (proj / ".lake" / "packages" / "REPL").is_dir() or (proj / ".lake" / "packages" / "repl").is_dir()
