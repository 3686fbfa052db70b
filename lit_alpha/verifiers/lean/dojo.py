"""``LeanDojoVerifier``: check whole proofs of theorems that live in a repository traced by LeanDojo.

A second backend (like :mod:`~lit_alpha.verifiers.lean.kimina`) that keeps the source rules of
:class:`~lit_alpha.verifiers.lean.verifier.LeanVerifier` and only replaces *where* Lean runs:

1. extraction and source rules run locally (:func:`~lit_alpha.verifiers.lean.rules.extract_proof`,
   :func:`~lit_alpha.verifiers.lean.rules.check_source`, the statement must be given exactly): a
   hostile completion never reaches LeanDojo;
2. the proof must be a tactic proof (``<statement> := by <tactics>``); its tactics (comments removed,
   re-indented) are run as ONE parenthesized tactic block ``(\\n  tac1\\n  tac2\\n)`` from the
   theorem's initial state in the theorem's own file: ``dojo.run_tac(initial_state, block)``;
3. the result decides: ``ProofFinished`` → 1; ``TacticState`` (goals left) → ``error:unfinished``;
   ``LeanError`` → ``error``; ``ProofGivenUp`` (LeanDojo's answer to ``sorry``) → ``cheat:sorry``;
   ``DojoTacticTimeoutError`` → ``timeout``; ``DojoCrashError`` (or any other exception of the
   Dojo) → ``crash:dojo``/``crash:<type>``. After a timeout or a crash that theorem's Dojo is
   closed and re-created on its next proof.

Axioms: a Dojo in tactic mode can only run tactics, and ``#print axioms`` is a command, so this
backend cannot query the axioms of the finished proof, nor read Lean's warnings. It runs the source
rules in their strict form instead (``strict=True``): everything the REPL and kimina backends stop
only at the axioms step is rejected here before the Dojo (a new ``axiom``, the whole family of
kernel shortcuts and native evaluation of :mod:`~lit_alpha.verifiers.lean.trust`: ``Lean.ofReduce*``,
``reduceBool``/``reduceNat``, ``trustCompiler``, ``native_decide``, ``decide +native`` or any
``native`` option, ``bv_decide``; ``implemented_by``, ``extern``, ``unsafe``, ``sorryAx``,
meta-code ...), and so are ``apply?``/``exact?``, which admit their goal with ``sorry``. What it
cannot see: a lemma of the traced repository that was itself proved natively or from an axiom (its
axioms are inherited silently); prefer the REPL or kimina backends where both are possible (docs/lean.md,
"What each Lean backend guarantees").

Entering a Dojo is expensive (it compiles the theorem's file up to the theorem), so one Dojo per
theorem is kept open, the ``max_open`` most recently used, and :meth:`LeanDojoVerifier.close` exits
them all. ``lean_dojo`` (``pip install "lit_alpha[lean]"``, package ``lean-dojo``) is imported
lazily; it needs Lean (elan), git, and the repository traced beforehand (``lean_dojo.trace(repo)``,
cached by LeanDojo), else entering the first Dojo traces it (hours).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Mapping

from lit_alpha.errors import UserError
from lit_alpha.verifiers.base import Verdict, Verifier
from lit_alpha.verifiers.lean import rules
from lit_alpha.verifiers.lean.verifier import with_answer

INSTALL_HINT = (
    'the lean-dojo backend needs the lean-dojo package: pip install "lit_alpha[lean]" (or pip install lean-dojo), '
    "with Lean 4 (elan) and git on PATH, and the repository traced by LeanDojo "
    "(python -c 'import lean_dojo as d; d.trace(d.LeanGitRepo(URL, COMMIT))'); see docs/lean.md"
)
Job = tuple[str, str, str, str]  # (file_path, theorem name, tactic block, statement + proof)


def _lean_dojo() -> Any:
    """The ``lean_dojo`` module; :class:`UserError` naming what to install when it is missing."""
    try:
        import lean_dojo
    except ImportError as exc:
        raise UserError(f"{INSTALL_HINT} ({exc})") from None
    return lean_dojo


def tactic_block(proof: str) -> str | None:
    """The proof after ``:=`` (comments already removed) as one parenthesized tactic block, or None
    if it is not ``by <tactics>``."""
    rest = proof.lstrip()
    if not rest.startswith(":="):
        return None
    rest = rest[2:].lstrip(" \t")
    if not (rest.startswith("by") and (len(rest) == 2 or rest[2] in " \t\r\n")):
        return None
    lines = rest[2:].split("\n")
    first = lines[0].strip()
    others = [ln.rstrip() for ln in lines[1:] if ln.strip()]
    indent = min((len(ln) - len(ln.lstrip()) for ln in others), default=0)
    body = ([first] if first else []) + [ln[indent:] for ln in others]
    if not body:
        return None
    return "(\n" + "\n".join("  " + ln for ln in body) + "\n)"


class LeanDojoVerifier(Verifier):
    """Whole-proof Lean 4 verifier through LeanDojo (records: ``theorem_statement``,
    ``theorem_full_name`` and optionally ``file_path``; ``src_context`` is not used, the theorem's
    own file is its environment).

    Args:
        repo_url: the git repository holding the theorems (traced by LeanDojo).
        commit: its commit (hash, or a tag/branch LeanDojo resolves).
        file_path: the theorems' file in the repository (``Foo/Bar.lean``), for records without a
            ``file_path`` key (a record's own ``file_path`` wins).
        timeout_s: time limit of one tactic run (and of entering a Dojo), whole seconds, rounded up.
        max_chars: longest proof block accepted (characters).
        max_open: Dojos kept open at once (least recently used closed first).
    """

    def __init__(
        self,
        repo_url: str | None = None,
        commit: str | None = None,
        file_path: str | None = None,
        timeout_s: float = 60.0,
        max_chars: int = rules.DEFAULT_MAX_CHARS,
        max_open: int = 4,
    ) -> None:
        if not timeout_s > 0 or max_chars < 1 or max_open < 1:
            raise ValueError("timeout_s must be > 0, max_chars and max_open >= 1")
        self.repo_url, self.commit, self.file_path = repo_url, commit, file_path
        self.timeout_s, self.max_chars, self.max_open = float(timeout_s), int(max_chars), int(max_open)
        self._repo: Any = None
        self._dojos: OrderedDict[tuple[str, str], tuple[Any, Any, Any]] = OrderedDict()

    # -- set-up ---------------------------------------------------------------------------------
    def preflight(self, field: str = "repo_url") -> None:
        """Raise :class:`UserError` if lean-dojo is missing or the repository is not given/usable.

        (Whether the repository is already traced is not checked: LeanDojo traces it on first use.)"""
        if not self.repo_url or not self.commit:
            raise UserError(f"{field}: the repository URL and commit are required; {INSTALL_HINT}")
        self._get_repo(_lean_dojo(), field)

    def _get_repo(self, ld: Any, field: str = "repo_url") -> Any:
        if self._repo is None:
            try:
                self._repo = ld.LeanGitRepo(self.repo_url, self.commit)
            except Exception as exc:  # noqa: BLE001 - bad URL, unknown commit, no git, no network
                raise UserError(f"{field}: LeanDojo cannot use {self.repo_url} at {self.commit}: "
                                f"{type(exc).__name__}: {exc}; {INSTALL_HINT}") from None
        return self._repo

    def close(self) -> None:
        """Exit every open Dojo (killing its Lean process); the next proof opens a fresh one."""
        while self._dojos:
            _, (ctx, _, _) = self._dojos.popitem(last=False)
            _exit(ctx)

    def __getstate__(self) -> dict[str, Any]:  # copies and pickles carry no processes
        return dict(self.__dict__, _repo=None, _dojos=OrderedDict())

    # -- the pure part: the same rules as LeanVerifier --------------------------------------------
    def prepare(self, record: Mapping[str, Any], completion: Any) -> Verdict | Job:
        """A final verdict, or the ``(file_path, name, tactic block, body)`` job to run."""
        try:
            stmt, name = record.get("theorem_statement"), record.get("theorem_full_name")
            path = record.get("file_path", self.file_path)
        except AttributeError:
            return Verdict(0.0, "error:record")
        if path is None:
            path = self.file_path
        if not all(isinstance(x, str) for x in (stmt, name, path)) or not stmt.strip() or not name.strip():
            return Verdict(0.0, "error:record")
        if not path.strip():
            return Verdict(0.0, "error:record")
        if not rules.valid_record(stmt, name):
            return Verdict(0.0, "error:record")
        body, reason = rules.proof_body(stmt, completion, self.max_chars, strict=True)
        if body is None:
            return Verdict(0.0, reason)
        stripped, _ = rules.strip_comments(body)  # check_source accepted it: comments are well formed
        if stripped is None:
            return Verdict(0.0, "parse")
        stmt_s = stmt.strip()
        proof = stripped[len(stmt_s):]
        if stmt_s.endswith(":= by") or stmt_s.endswith(":=by"):  # the statement carries `:= by`
            proof = ":= by\n" + proof
        elif stmt_s.endswith(":="):
            proof = ":=" + proof
        block = tactic_block(proof)
        if block is None:
            return Verdict(0.0, "parse:not_tactic_proof")
        return path.strip(), name.strip(), block, body

    # -- Verifier ---------------------------------------------------------------------------------
    def check(self, record: Mapping[str, Any], completion: str) -> Verdict:
        prepared = self.prepare(record, completion)
        if isinstance(prepared, Verdict):
            return prepared
        return with_answer(self._run(*prepared[:3]), prepared[3])

    def _run(self, path: str, name: str, block: str) -> Verdict:
        try:
            ld = _lean_dojo()
        except UserError:
            return Verdict(0.0, "crash:no_lean_dojo")
        if not self.repo_url or not self.commit:
            return Verdict(0.0, "crash:no_repo")
        key = (path, name)
        try:
            dojo, state = self._open(ld, key)
        except Exception as exc:  # noqa: BLE001 - DojoInitError, a missing trace, a bad repo ...
            if _is(exc, ld, "DojoTacticTimeoutError"):
                return Verdict(0.0, "timeout")
            return Verdict(0.0, f"crash:{'dojo_init' if _is(exc, ld, 'DojoInitError') else type(exc).__name__}")
        try:
            result = dojo.run_tac(state, block)
        except Exception as exc:  # noqa: BLE001 - whatever the Dojo raises, it is now suspect
            self._drop(key)
            if _is(exc, ld, "DojoTacticTimeoutError"):
                return Verdict(0.0, "timeout")
            if _is(exc, ld, "DojoCrashError"):
                return Verdict(0.0, "crash:dojo")
            return Verdict(0.0, f"crash:{type(exc).__name__}")
        if _is(result, ld, "ProofFinished"):
            return Verdict(1.0, "ok")
        if _is(result, ld, "ProofGivenUp"):
            return Verdict(0.0, "cheat:sorry")
        if _is(result, ld, "LeanError"):
            return Verdict(0.0, "error")
        if _is(result, ld, "TacticState"):
            return Verdict(0.0, "error:unfinished")
        return Verdict(0.0, "garbage")

    def _open(self, ld: Any, key: tuple[str, str]) -> tuple[Any, Any]:
        """The open Dojo and initial state of theorem ``key``, entering one if needed (LRU)."""
        if key in self._dojos:
            self._dojos.move_to_end(key)
            _, dojo, state = self._dojos[key]
            return dojo, state
        theorem = ld.Theorem(self._get_repo(ld), key[0], key[1])
        ctx = ld.Dojo(theorem, timeout=max(1, math.ceil(self.timeout_s)))
        dojo, state = ctx.__enter__()
        self._dojos[key] = (ctx, dojo, state)
        while len(self._dojos) > self.max_open:
            _, (old, _, _) = self._dojos.popitem(last=False)
            _exit(old)
        return dojo, state

    def _drop(self, key: tuple[str, str]) -> None:
        entry = self._dojos.pop(key, None)
        if entry is not None:
            _exit(entry[0])


def _is(obj: Any, ld: Any, cls_name: str) -> bool:
    cls = getattr(ld, cls_name, None)
    return isinstance(cls, type) and isinstance(obj, cls)


def _exit(ctx: Any) -> None:
    try:
        ctx.__exit__(None, None, None)
    except Exception:  # noqa: BLE001 - closing a dead Dojo must not fail the caller
        pass
