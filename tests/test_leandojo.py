"""LeanDojoVerifier against a stand-in ``lean_dojo`` module (injected through ``sys.modules``; no
Lean, no LeanDojo, no traced repository).

The stand-in's ``Dojo.run_tac`` answers by what the tactic block says: ``omega`` finishes the proof,
``intro`` leaves a goal, ``simp`` is a Lean error, ``give_up`` is LeanDojo's ``ProofGivenUp``,
``hang_tactic`` raises ``DojoTacticTimeoutError`` and ``crash_tactic`` ``DojoCrashError``."""

from __future__ import annotations

import json
import pickle
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

from lit_alpha.errors import UserError
from lit_alpha.verifiers.base import Verdict
from lit_alpha.verifiers.guarded import GuardedVerifier, sanitize
from lit_alpha.verifiers.lean.dojo import LeanDojoVerifier, tactic_block

HERE = Path(__file__).parent
EXPLOITS = [json.loads(line) for line in (HERE / "data" / "lean_exploits.jsonl").read_text().splitlines() if line.strip()]
STMT = "theorem t1 (a b : ℕ) : a + b = b + a"
RECORD = {"id": "p", "theorem_statement": STMT, "theorem_full_name": "t1", "src_context": "import Mathlib\n",
          "file_path": "Foo/Bar.lean"}
EXPLOIT_REC = {"id": "t", "theorem_statement": "theorem t (x : ℕ) (h₀ : x = 2) : x + x = 4 := by\n",
               "theorem_full_name": "t", "file_path": "Foo/Bar.lean"}  # the corpus's theorem (tests/test_lean.py)


def proof(*tactics: str) -> str:
    return " := by\n" + "".join(f"  {t}\n" for t in tactics) + "```"


def make_lean_dojo() -> types.ModuleType:
    """A fake ``lean_dojo`` with the names the verifier uses and a log of what happened."""
    ld = types.ModuleType("lean_dojo")
    ld.log = []

    @dataclass(frozen=True)
    class TacticState:
        pp: str
        id: int
        message: str | None = None

    @dataclass(frozen=True)
    class ProofFinished:
        tactic_state_id: int
        message: str | None = None

    @dataclass(frozen=True)
    class ProofGivenUp:
        pass

    @dataclass(frozen=True)
    class LeanError:
        error: str

    class DojoCrashError(Exception):
        pass

    class DojoTacticTimeoutError(Exception):
        pass

    class DojoInitError(Exception):
        pass

    class LeanGitRepo:
        def __init__(self, url: str, commit: str) -> None:
            if "bad" in url:
                raise ValueError(f"{url} is not a git repository")
            self.url, self.commit = url, commit

    class Theorem:
        def __init__(self, repo: LeanGitRepo, file_path, full_name: str) -> None:
            self.repo, self.file_path, self.full_name = repo, file_path, full_name

    class Dojo:
        def __init__(self, entry: Theorem, timeout: int = 600) -> None:
            assert isinstance(entry, Theorem) and isinstance(timeout, int)
            self.entry, self.timeout = entry, timeout

        def __enter__(self):
            ld.log.append(("enter", self.entry.full_name))
            if self.entry.full_name == "missing":
                raise DojoInitError("Failed to locate the theorem")
            return self, TacticState("a b : ℕ\n⊢ a + b = b + a", 0)

        def __exit__(self, *exc) -> None:
            ld.log.append(("exit", self.entry.full_name))

        def run_tac(self, state, tactic: str):
            assert isinstance(state, TacticState) and isinstance(tactic, str)
            ld.log.append(("run_tac", tactic))
            if "hang_tactic" in tactic:
                raise DojoTacticTimeoutError()
            if "crash_tactic" in tactic:
                raise DojoCrashError("Unexpected EOF")
            if "give_up" in tactic:
                return ProofGivenUp()
            if "simp" in tactic:
                return LeanError("simp made no progress")
            if "intro" in tactic:
                return TacticState("⊢ False", 1)
            if "omega" in tactic:
                return ProofFinished(2)
            return LeanError("unknown tactic")

    for cls in (TacticState, ProofFinished, ProofGivenUp, LeanError, DojoCrashError, DojoTacticTimeoutError,
                DojoInitError, LeanGitRepo, Theorem, Dojo):
        setattr(ld, cls.__name__, cls)
    return ld


@pytest.fixture()
def lean_dojo(monkeypatch):
    ld = make_lean_dojo()
    monkeypatch.setitem(sys.modules, "lean_dojo", ld)
    return ld


@pytest.fixture()
def no_lean_dojo(monkeypatch):
    monkeypatch.setitem(sys.modules, "lean_dojo", None)  # `import lean_dojo` raises ImportError


def verifier(**kw) -> LeanDojoVerifier:
    return LeanDojoVerifier(repo_url="https://github.com/x/y", commit="abc123", **kw)


def runs(ld) -> list[str]:
    return [x[1] for x in ld.log if x[0] == "run_tac"]


@pytest.mark.parametrize("tactic,reason", [
    ("omega", "ok"), ("intro h", "error:unfinished"), ("simp", "error"), ("give_up", "cheat:sorry"),
    ("hang_tactic", "timeout"), ("crash_tactic", "crash:dojo"),
])
def test_dojo_results_decide_the_verdict(lean_dojo, tactic, reason):
    v = verifier()
    out = v.verify(RECORD, proof(tactic))
    assert out.reason == reason and out.score == (1.0 if reason == "ok" else 0.0)
    if reason == "ok":
        assert out.answer and "omega" in out.answer


def test_the_whole_proof_is_one_tactic_block_from_the_initial_state(lean_dojo):
    v = verifier()
    completion = " := by\n  -- a comment about omega\n  have h : a + b = b + a := by\n    omega\n  exact h\n```"
    assert v.verify(RECORD, completion).correct
    assert runs(lean_dojo) == ["(\n  have h : a + b = b + a := by\n    omega\n  exact h\n)"]
    assert [x for x in lean_dojo.log if x[0] == "enter"] == [("enter", "t1")]
    assert tactic_block(":= by omega") == "(\n  omega\n)"
    assert tactic_block(":= Nat.add_comm a b") is None and tactic_block(":= by\n\n") is None


def test_statement_that_carries_by_and_term_proofs(lean_dojo):
    rec = dict(RECORD, theorem_statement=STMT + " := by")
    assert verifier().verify(rec, "\n  omega\n```").correct
    assert runs(lean_dojo) == ["(\n  omega\n)"]
    out = verifier().verify(RECORD, " := Nat.add_comm a b\n```")
    assert out.score == 0.0 and out.reason == "parse:not_tactic_proof" and len(runs(lean_dojo)) == 1


@pytest.mark.parametrize("exploit", [e for e in EXPLOITS if e["layer"] == "rules"], ids=lambda e: e["id"])
def test_source_rules_run_before_any_dojo_call(lean_dojo, exploit):
    v = verifier()
    prepared = v.prepare(EXPLOIT_REC, exploit["completion"])
    assert isinstance(prepared, Verdict), "a rules-layer exploit reached the Dojo"
    out = v.verify(EXPLOIT_REC, exploit["completion"])
    assert out.score == 0.0 and out.reason.startswith(exploit["expect"]), (exploit["id"], out)
    assert lean_dojo.log == []


BEYOND_RULES = [e for e in EXPLOITS if e["layer"] != "rules" and "standin:" not in e["completion"]]


def test_every_real_exploit_beyond_the_rules_has_a_dojo_verdict():
    """What the REPL/kimina backends stop only with Lean's messages or axioms (and is real Lean
    behaviour, not a scripted stand-in fault) must be stopped at the source here."""
    assert BEYOND_RULES and all(e.get("dojo") for e in BEYOND_RULES), [e["id"] for e in BEYOND_RULES]


@pytest.mark.parametrize("exploit", BEYOND_RULES, ids=lambda e: e["id"])
def test_strict_source_rules_stop_what_only_lean_stops_elsewhere(lean_dojo, exploit):
    v = verifier()
    prepared = v.prepare(EXPLOIT_REC, exploit["completion"])
    assert isinstance(prepared, Verdict) and prepared.reason == exploit["dojo"], (exploit["id"], prepared)
    assert v.verify(EXPLOIT_REC, exploit["completion"]).score == 0.0 and lean_dojo.log == []


@pytest.mark.parametrize("completion", ["  decide +kernel\n```", "  simp only [Nat.reduceAdd]\n  omega\n```",
                                        "  have := decide (x = 2)\n  omega\n```"])
def test_strict_rules_let_honest_neighbours_through(lean_dojo, completion):
    assert not isinstance(verifier().prepare(EXPLOIT_REC, completion), Verdict)


def test_honest_proof_of_the_corpus_theorem_reaches_the_dojo(lean_dojo):
    assert verifier().verify(EXPLOIT_REC, "  subst h₀\n  omega\n```").correct
    assert runs(lean_dojo) == ["(\n  subst h₀\n  omega\n)"]


def test_changed_statement_is_rejected_without_the_dojo(lean_dojo):
    out = verifier().verify(RECORD, "\n```\n```lean4\ntheorem t1 (a b : ℕ) : a = a := by\n  omega\n```")
    assert out.reason == "cheat:statement" and lean_dojo.log == []


def test_dojo_is_reused_and_recreated_after_a_crash_or_timeout(lean_dojo):
    v = verifier()
    assert v.verify(RECORD, proof("omega")).correct
    assert v.verify(RECORD, proof("simp")).reason == "error"
    assert [x[0] for x in lean_dojo.log].count("enter") == 1  # one Dojo for both proofs
    assert v.verify(RECORD, proof("crash_tactic")).reason == "crash:dojo"
    assert lean_dojo.log[-1] == ("exit", "t1")  # the crashed Dojo is closed ...
    assert v.verify(RECORD, proof("omega")).correct
    assert [x[0] for x in lean_dojo.log].count("enter") == 2  # ... and re-created for the next proof
    assert v.verify(RECORD, proof("hang_tactic")).reason == "timeout"
    assert v.verify(RECORD, proof("omega")).correct
    assert [x[0] for x in lean_dojo.log].count("enter") == 3
    v.close()
    assert lean_dojo.log[-1] == ("exit", "t1") and not v._dojos


def test_lru_keeps_at_most_max_open_dojos(lean_dojo):
    v = verifier(max_open=2)
    for name in ("t1", "t2", "t3", "t1"):
        rec = dict(RECORD, theorem_statement=STMT.replace("t1", name), theorem_full_name=name)
        assert v.verify(rec, proof("omega")).correct
    assert [x for x in lean_dojo.log if x[0] != "run_tac"] == [
        ("enter", "t1"), ("enter", "t2"), ("enter", "t3"), ("exit", "t1"), ("enter", "t1"), ("exit", "t2")]
    v.close()
    assert sorted(x[1] for x in lean_dojo.log[-2:]) == ["t1", "t3"]


def test_file_path_from_record_else_argument(lean_dojo):
    seen = []
    real = lean_dojo.Theorem

    class Spy(real):
        def __init__(self, repo, file_path, full_name):
            seen.append(file_path)
            super().__init__(repo, file_path, full_name)

    lean_dojo.Theorem = Spy
    no_path = {k: v for k, v in RECORD.items() if k != "file_path"}
    assert verifier(file_path="Default.lean").verify(no_path, proof("omega")).correct
    assert verifier(file_path="Default.lean").verify(RECORD, proof("omega")).correct
    assert seen == ["Default.lean", "Foo/Bar.lean"]
    assert verifier().verify(no_path, proof("omega")).reason == "error:record"


def test_dojo_init_failure_is_a_zero_verdict(lean_dojo):
    rec = dict(RECORD, theorem_statement=STMT.replace("t1", "missing"), theorem_full_name="missing")
    assert verifier().verify(rec, proof("omega")).reason == "crash:dojo_init"


def test_missing_lean_dojo_is_a_clear_error(no_lean_dojo):
    with pytest.raises(UserError, match=r'pip install "lit_alpha\[lean\]".*lean-dojo.*traced'):
        verifier().preflight()
    out = verifier().verify(RECORD, proof("omega"))  # never raises: a 0 verdict
    assert out.score == 0.0 and out.reason == "crash:no_lean_dojo"
    assert verifier().verify(RECORD, proof("sorry")).reason == "cheat:sorry"  # the rules still run


def test_preflight_needs_a_usable_repository(lean_dojo):
    verifier().preflight()
    with pytest.raises(UserError, match="repository URL and commit"):
        LeanDojoVerifier(repo_url="https://github.com/x/y").preflight()
    with pytest.raises(UserError, match="cannot use"):
        LeanDojoVerifier(repo_url="https://bad/x", commit="c").preflight()


def test_lean_task_selects_the_dojo_backend(lean_dojo):
    from lit_alpha.tasks.lean import LeanTask

    task = LeanTask(dojo_repo_url="https://github.com/x/y", dojo_commit="abc", dojo_file_path="Foo/Bar.lean")
    assert isinstance(task.verifier, LeanDojoVerifier) and task.verifier.file_path == "Foo/Bar.lean"
    with pytest.raises(UserError, match="not both"):
        LeanTask(dojo_repo_url="https://github.com/x/y", dojo_commit="abc", server_url="http://127.0.0.1:9")


def test_lean_task_without_lean_dojo_fails_at_start_up(no_lean_dojo):
    from lit_alpha.tasks.lean import LeanTask

    with pytest.raises(UserError, match="lean-dojo"):
        LeanTask(dojo_repo_url="https://github.com/x/y", dojo_commit="abc")


def test_guarded_and_pickled(lean_dojo):
    v = verifier()
    assert v.verify(RECORD, proof("omega")).correct
    copy = pickle.loads(pickle.dumps(v))
    assert not copy._dojos and copy.verify(RECORD, proof("omega")).correct
    out = GuardedVerifier(v).verify_batch([RECORD, {"x": 1}, RECORD], [proof("omega"), proof("omega"), None])
    assert [o.reason for o in out] == ["ok", "error:record", "parse"] and all(sanitize(o) is o for o in out)


def test_constructor_rejects_bad_settings():
    for kw in ({"timeout_s": 0}, {"max_chars": 0}, {"max_open": 0}):
        with pytest.raises(ValueError):
            LeanDojoVerifier(**kw)
