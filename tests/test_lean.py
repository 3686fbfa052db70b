"""The Lean 4 verifier without Lean: rules, the REPL client, the pool, timeouts, crash recovery, no
stray processes, and an exploit corpus; against ``tests/lean_standin.py``, a stand-in executable that
speaks the REPL's JSON protocol. Tests marked ``lean`` run against a real Lean project (see docs/lean.md)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lit_alpha.errors import UserError
from lit_alpha.verifiers.base import Verdict
from lit_alpha.verifiers.lean import rules
from lit_alpha.verifiers.lean.repl import LeanREPL, REPLError
from lit_alpha.verifiers.lean.verifier import LeanVerifier

HERE = Path(__file__).resolve().parent
STANDIN = [sys.executable, str(HERE / "lean_standin.py")]
EXPLOITS = [json.loads(line) for line in (HERE / "data" / "lean_exploits.jsonl").read_text().splitlines() if line.strip()]
STMT = "theorem t (x : ℕ) (h₀ : x = 2) : x + x = 4 := by\n"
REC = {"id": "t", "theorem_statement": STMT, "theorem_full_name": "t", "src_context": "import Mathlib\n"}
HONEST = [
    "  omega\n```",
    "  -- substitute, then compute (comments may say sorry, axiom, native_decide, #exit)\n  subst h₀\n  rfl\n```",
    "  /- nested /- comment -/ -/\n  simp [h₀]\n```\nDone.",
    "```\nA cleaner proof:\n```lean4\nimport Mathlib\nopen Real\n/-- docstring -/\n" + STMT + "  omega\n```",
    "  set_option maxRecDepth 2000 in\n  omega\n```",
]


@pytest.fixture
def project(tmp_path) -> Path:
    (tmp_path / "lakefile.lean").write_text("import Lake\nrequire REPL from git \"https://github.com/leanprover-community/repl\"\n")
    return tmp_path


def verifier(project, *extra, **kw) -> LeanVerifier:
    kw = {"workers": 1, "timeout_s": 2.0, "header_timeout_s": 5.0, "memory_mb": 0, **kw}
    return LeanVerifier(project_dir=str(project), repl_cmd=[*STANDIN, *extra], **kw)


def alive(pid: int, zombie_counts: bool = True) -> bool:
    """Has a /proc entry (a zombie too, unless ``zombie_counts`` is False: a zombie whose parent is
    gone is init's to reap, not ours)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return zombie_counts or state not in ("Z", "X")


def wait_gone(pids, timeout=5.0, zombie_counts=False) -> list[int]:
    end = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < end:
        left = [p for p in left if alive(p, zombie_counts)]
        time.sleep(0.05)
    return left


def pids_in(d: Path) -> list[int]:
    out = []
    for f in d.glob("*.pid"):
        out += [int(x) for x in f.read_text().split() if x]
    return out


# -- rules --------------------------------------------------------------------------------------
def test_extract_last_complete_block_and_bounds():
    two = "```lean4\nA\n```\ntext\n```lean4\nB\n```\n```lean4\nunfinished"
    assert rules.extract_proof(two, 100) == "B\n"
    assert rules.extract_proof("```lean4\nA", 100) is None
    assert rules.extract_proof("```lean4foo\nA\n```", 100) is None  # not a lean4 fence
    assert rules.extract_proof("```lean4\n" + "x" * 101 + "\n```", 100) is None  # too long
    assert rules.extract_proof("```lean4\nA ``` B\n```", 100) == "A ``` B\n"  # closes only at a line start
    assert rules.extract_proof(None, 100) is None and rules.extract_proof("", 100) is None
    start = time.perf_counter()
    for hostile in ["```lean4\n" * 10**5, "```lean4\nx```" * 10**5, "`" * 10**6]:
        rules.extract_proof(hostile, 20000)
    assert time.perf_counter() - start < 2.0


def test_comment_stripping_is_lean_like():
    code, why = rules.strip_comments("a /- b /- c -/ d -/ e -- f\ng")
    assert why == "ok" and code.split() == ["a", "e", "g"] and len(code) == len("a /- b /- c -/ d -/ e -- f\ng")
    assert rules.strip_comments("a /- b")[0] is None
    assert rules.strip_comments("a -/")[0] is None


def test_statement_must_be_exact_and_at_a_line_start():
    assert rules.check_source(STMT + "  omega\n", STMT) is None
    assert rules.check_source("x " + STMT + "  omega\n", STMT) == "cheat:statement"
    assert rules.check_source(STMT.replace("4", "5") + "  omega\n", STMT) == "cheat:statement"
    assert rules.check_source("  omega\n", STMT) == "cheat:statement"
    assert rules.check_source(STMT + "  omega\n", "") == "cheat:statement"


def test_accept_messages_is_deepseek_rule_or_stricter():
    ok, info = {"severity": "info", "data": "Try this: omega"}, {"severity": "warning", "data": "unused variable `h`"}
    assert rules.accept_messages([]) == (True, "ok")
    assert rules.accept_messages([ok, info]) == (True, "ok")
    assert rules.accept_messages([{"severity": "error", "data": "unsolved goals"}]) == (False, "error")
    assert rules.accept_messages([{"severity": "warning", "data": "declaration uses 'sorry'"}]) == (False, "cheat:sorry")
    assert rules.accept_messages([{"severity": "warning", "data": "linarith failed to find"}])[0] is False
    for bad in [None, "x", [None], [{"severity": 3}], [{"severity": "fatal", "data": ""}]]:
        assert rules.accept_messages(bad) == (False, "garbage")


def test_accept_response():
    assert rules.accept_response({"env": 3}) == (True, "ok")
    assert rules.accept_response({"env": 3, "sorries": [{"goal": "⊢ False"}]}) == (False, "cheat:sorry")
    assert rules.accept_response({"message": "Unknown environment."}) == (False, "error:repl")
    assert rules.accept_response({"messages": []}) == (False, "garbage")  # no env id
    assert rules.accept_response({"env": True}) == (False, "garbage")
    assert rules.accept_response([1]) == (False, "garbage")


def test_axiom_parsing_and_allow_list():
    msg = lambda d, s="info": [{"severity": s, "data": d}]  # noqa: E731
    three = "'t' depends on axioms: [propext,\n Classical.choice,\n Quot.sound]"
    assert rules.parse_axioms(msg(three), "t") == rules.ALLOWED_AXIOMS
    assert rules.check_axioms(rules.parse_axioms(msg(three), "t")) is None
    assert rules.parse_axioms(msg("'t' does not depend on any axioms"), "t") == frozenset()
    native = "'t' depends on axioms: [propext, Lean.ofReduceBool]"
    assert rules.check_axioms(rules.parse_axioms(msg(native), "t")) == "cheat:axiom:Lean.ofReduceBool"
    assert rules.check_axioms(rules.parse_axioms(msg("'t' depends on axioms: [sorryAx]"), "t")) == "cheat:axiom:sorryAx"
    assert rules.parse_axioms(msg(three), "u") is None  # about another constant
    assert rules.parse_axioms(msg("unknown constant 't'", "error"), "t") is None
    assert rules.parse_axioms(msg(three) * 2, "t") is None
    assert rules.parse_axioms(msg("'t' depends on axioms: [a b]"), "t") is None
    assert rules.check_axioms(None) == "error:axioms"


# -- the exploit corpus -------------------------------------------------------------------------
def test_exploit_corpus_is_large_and_documented():
    assert len(EXPLOITS) >= 25
    assert len({e["id"] for e in EXPLOITS}) == len(EXPLOITS)
    assert all(e["why"] and e["layer"] in ("rules", "lean", "axioms") for e in EXPLOITS)


@pytest.mark.parametrize("exploit", EXPLOITS, ids=lambda e: e["id"])
def test_no_exploit_passes(exploit, project):
    """Each hostile proof fails, with its reason, at the layer the corpus names: ``rules`` before
    any Lean call; ``lean``/``axioms`` by what (the stand-in playing) Lean says."""
    v = verifier(project)
    try:
        prepared = v.prepare(REC, exploit["completion"])
        if exploit["layer"] == "rules":
            assert isinstance(prepared, Verdict), "a rules-layer exploit reached Lean"
            out = prepared
        else:
            assert not isinstance(prepared, Verdict), prepared
            out = v.verify(REC, exploit["completion"])
        assert out.score == 0.0 and out.reason.startswith(exploit["expect"]), (exploit["id"], out)
    finally:
        v.close()


def beneath_the_rules(exploit: dict) -> tuple[str, str, str]:
    """The job Lean would get for ``exploit`` if the source rules let it through (statement + proof)."""
    return REC["src_context"], STMT + exploit["completion"].split("```")[0], "t"


AXIOM_EXPLOITS = [e for e in EXPLOITS if e.get("axiom") and e["layer"] == "rules"]


def test_corpus_names_the_axiom_of_every_kernel_shortcut():
    """Every member of the family of trust-the-compiler shortcuts is in the corpus (issue 15)."""
    ids = {e["id"] for e in EXPLOITS}
    assert {"ofReduceNat", "open_lean_ofReduceNat", "decide_native", "decide_native_config",
            "trustCompiler", "apply_search", "exact_search"} <= ids
    assert {e["axiom"] for e in AXIOM_EXPLOITS} >= {"Lean.ofReduceBool", "Lean.ofReduceNat", "Lean.trustCompiler"}


@pytest.mark.parametrize("exploit", AXIOM_EXPLOITS, ids=lambda e: e["id"])
def test_axioms_step_also_stops_what_the_rules_stop(exploit, project):
    """Defence in depth: with the source rules bypassed, the axioms step (what Lean's ``#print
    axioms`` lists, as the stand-in models it) still rejects each kernel shortcut."""
    v = verifier(project)
    try:
        out = v._run([beneath_the_rules(exploit)])[0]
        assert out.score == 0.0 and out.reason == f"cheat:axiom:{exploit['axiom']}", (exploit["id"], out)
    finally:
        v.close()


def test_standin_models_search_tactics_admitting_with_sorry(project):
    """``apply?``/``exact?`` close the goal with ``sorry`` in real Lean: a warning and ``sorryAx``."""
    v = verifier(project)
    try:
        pool = v.pool
        for tactic, reason in (("apply?", "cheat:sorry"), ("exact?", "error")):
            job = (REC["src_context"], STMT + f"  {tactic}\n", "t")
            assert pool.run([job])[0].reason == reason
    finally:
        v.close()
    repl = LeanREPL(STANDIN, cwd=str(project))
    try:
        env = repl.header_env(REC["src_context"], 5.0)
        proof = repl.request({"cmd": STMT + "  apply?\n", "env": env}, 5.0)
        assert {"severity": "warning", "data": "declaration uses 'sorry'"} in proof["messages"]
        assert not proof.get("sorries")  # a synthetic sorry: only the warning says so
        ax = repl.request({"cmd": "#print axioms t", "env": proof["env"]}, 5.0)
        assert rules.check_axioms(rules.parse_axioms(ax["messages"], "t")) == "cheat:axiom:sorryAx"
    finally:
        repl.kill()


def test_honest_proofs_pass_and_batches_keep_order(project, tmp_path):
    log = tmp_path / "log.jsonl"
    v = verifier(project, "--log", str(log), workers=2)
    try:
        bad = [e["completion"] for e in EXPLOITS[:6]]
        comps = [c for pair in zip(HONEST, bad) for c in pair]
        out = v.verify_batch([REC] * len(comps), comps)
        assert [o.score for o in out] == [1.0, 0.0] * len(HONEST), out
        assert out[0].answer == STMT.strip() + " omega" and out[1].answer is None  # canonical proof text
        sent = [json.loads(line) for line in log.read_text().splitlines()]
        headers = [s for s in sent if "env" not in s]
        assert len(headers) <= 2  # once per worker, then cached
        proofs = [s["cmd"] for s in sent if "env" in s and not s["cmd"].startswith("#print axioms")]
        assert len(proofs) == len(HONEST) and all(p.startswith(STMT.strip()) for p in proofs)  # no preamble sent
        assert sum(s["cmd"] == "#print axioms t" for s in sent) == len(HONEST)
    finally:
        v.close()


# -- the REPL client and the pool ---------------------------------------------------------------
def test_repl_client_protocol(tmp_path):
    repl = LeanREPL(STANDIN, cwd=str(tmp_path))
    try:
        env = repl.header_env("import Mathlib\n", 5)
        assert repl.header_env("import Mathlib\n", 5) == env  # cached
        out = repl.request({"cmd": STMT + "  sorry\n", "env": env}, 5)
        assert out["sorries"] and out["messages"][0]["severity"] == "warning"
        assert repl.request({"cmd": "x", "env": 999}, 5) == {"message": "Unknown environment."}
        with pytest.raises(REPLError) as err:
            repl.request({"cmd": "-- standin:hang", "env": env}, 0.5)
        assert err.value.kind == "timeout"
    finally:
        repl.kill()
    assert repl.proc.returncode is not None


@pytest.mark.parametrize("mode,reason", [
    ("hang", "timeout"), ("partial", "timeout"), ("crash", "crash"), ("garbage", "crash:garbage"),
    ("flood", "crash:garbage"), ("exit_after_answer", "crash"),  # dies before the axiom check
])
def test_worker_faults_cost_one_proof_and_the_worker_is_replaced(project, mode, reason):
    v = verifier(project, timeout_s=1.0)
    try:
        start = time.monotonic()
        bad = v.verify(REC, f"  -- standin:{mode}\n  omega\n```")
        assert bad.reason == reason and time.monotonic() - start < 4
        assert v.verify(REC, HONEST[0]).score == 1.0  # a fresh worker takes the next proof
        kind = {"crash:garbage": "garbage"}.get(reason, reason)
        assert v.pool.counters[kind] >= 1 and v.pool.counters["start"] == 2
    finally:
        v.close()


def test_memory_limit_kills_a_growing_worker(project):
    v = verifier(project, memory_mb=1024, timeout_s=5.0)
    try:
        assert v.verify(REC, "  -- standin:grow\n  omega\n```").reason == "crash"
        assert v.verify(REC, HONEST[0]).score == 1.0
    finally:
        v.close()


def test_startup_garbage_and_bad_header(project, caplog):
    v = verifier(project, "--startup-garbage")
    try:
        assert v.verify(REC, HONEST[0]).reason == "crash:garbage"
    finally:
        v.close()
    v = verifier(project)
    rec = dict(REC, src_context="import Mathlib\n-- standin:bad_header\n")
    try:
        out = v.verify_batch([rec] * 3, [HONEST[0]] * 3)
        assert [o.reason for o in out] == ["crash:header"] * 3
        assert "header does not elaborate" in caplog.text
    finally:
        v.close()


def test_repl_debug_output_before_answers_is_skipped(project):
    """Some REPL versions print "Processing incremental state ..." and the command text to stdout."""
    v = verifier(project, "--incremental-noise")
    try:
        comps = HONEST + [e["completion"] for e in EXPLOITS if e["layer"] != "rules"]
        out = v.verify_batch([REC] * len(comps), comps)
        assert [o.score for o in out] == [1.0] * len(HONEST) + [0.0] * (len(comps) - len(HONEST)), out
        assert v.pool.counters["start"] == 1
    finally:
        v.close()


def test_pool_runs_in_parallel_and_a_hang_blocks_one_worker_only(project):
    v = verifier(project, workers=2, timeout_s=1.0)
    try:
        comps = ["  -- standin:hang\n  omega\n```"] + ["  -- standin:slow=0.1\n  omega\n```"] * 6
        start = time.monotonic()
        out = v.verify_batch([REC] * len(comps), comps)
        assert [o.reason for o in out] == ["timeout"] + ["ok"] * 6
        assert time.monotonic() - start < 3.0
    finally:
        v.close()


def test_close_kills_process_groups_without_zombies(project, tmp_path):
    d = tmp_path / "pids"
    d.mkdir()
    v = verifier(project, "--pids", str(d), "--child", workers=2)
    v.verify_batch([REC] * 2, [HONEST[0]] * 2)
    pids = pids_in(d)
    assert len(pids) == 4 and all(alive(p) for p in pids)  # 2 workers, each with a child (like lake + repl)
    leaders = [int(f.read_text().split()[0]) for f in d.glob("*.pid")]
    v.close()
    assert wait_gone(leaders, zombie_counts=True) == []  # our children: killed *and* reaped
    assert wait_gone(pids) == []  # their children: killed with the process group


def test_recycle_after_max_proofs(project):
    v = verifier(project, max_proofs_per_worker=2)
    try:
        assert all(o.score == 1.0 for o in v.verify_batch([REC] * 5, [HONEST[0]] * 5))
        assert v.pool.counters["recycle"] == 2 and v.pool.counters["start"] == 3
    finally:
        v.close()


DRIVER = textwrap.dedent("""
    import sys
    from lit_alpha.verifiers.lean.verifier import LeanVerifier
    v = LeanVerifier(project_dir=sys.argv[1], repl_cmd=[sys.executable, sys.argv[2], "--pids", sys.argv[3], "--child"],
                     workers=2, timeout_s=600, memory_mb=0)
    rec = {"id": "t", "theorem_statement": "theorem t : 1 = 1 := by\\n", "theorem_full_name": "t", "src_context": "import Mathlib\\n"}
    print("ready", flush=True)
    v.verify_batch([rec] * 2, ["  -- standin:" + sys.argv[4] + "\\n  rfl\\n```"] * 2)
    print("done", flush=True)
""")


@pytest.mark.parametrize("how", ["sigint", "exit", "sigkill"])
def test_no_stray_processes_after_ctrl_c_exit_or_kill(project, tmp_path, how):
    """Ctrl-C in the middle of a batch, a normal exit without close(), and SIGKILL of the trainer."""
    d = tmp_path / "pids"
    d.mkdir()
    mode = "slow=0.01" if how == "exit" else "hang"
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(project), str(HERE / "lean_standin.py"), str(d), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 30
        while len(pids_in(d)) < (4 if how != "sigkill" else 2) and time.monotonic() < end:
            time.sleep(0.05)
        if how != "exit":
            time.sleep(0.3)  # the batch is now waiting on hanging workers
            proc.send_signal(signal.SIGINT if how == "sigint" else signal.SIGKILL)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    pids = pids_in(d)
    assert pids
    leaders = [int(f.read_text().split()[0]) for f in d.glob("*.pid")]
    # SIGKILL gives no chance to clean up: the workers die by PR_SET_PDEATHSIG (the real REPL under
    # lake also sees EOF on stdin); the stand-in's helper child does not, so only leaders are checked.
    assert wait_gone(leaders if how == "sigkill" else pids) == []
    if how == "sigint":
        assert "KeyboardInterrupt" in proc.stderr.read()
    if how == "sigkill":
        for p in set(pids) - set(leaders):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


# -- set-up errors ------------------------------------------------------------------------------
def test_clear_errors_when_lean_is_missing(tmp_path, project):
    with pytest.raises(UserError, match="not set.*elan"):
        LeanVerifier().preflight()
    with pytest.raises(UserError, match="not a directory"):
        LeanVerifier(project_dir=str(tmp_path / "nope")).preflight()
    with pytest.raises(UserError, match="not a Lean 4 .lake. project"):
        LeanVerifier(project_dir=str(tmp_path / "..")).preflight()
    with pytest.raises(UserError, match="not found on PATH"):
        LeanVerifier(project_dir=str(project), repl_cmd="no-such-lake-xyz exe repl").preflight()
    (project / "lakefile.lean").write_text("import Lake\nrequire mathlib from git \"x\"\n")
    fake_lake = tmp_path / "lake"
    fake_lake.write_text("#!/bin/sh\n")
    fake_lake.chmod(0o755)
    with pytest.raises(UserError, match="does not require the Lean REPL"):
        LeanVerifier(project_dir=str(project), repl_cmd=f"{fake_lake} exe repl").preflight()
    LeanVerifier(project_dir=str(project), repl_cmd=STANDIN).preflight()  # a direct executable is fine


def test_no_project_gives_a_verdict_not_an_exception():
    assert LeanVerifier().verify(REC, HONEST[0]).reason == "crash:no_project"


def test_pickled_verifier_carries_no_processes(project):
    import pickle

    v = verifier(project)
    try:
        v.verify(REC, HONEST[0])
        w = pickle.loads(pickle.dumps(v))
        assert w._pool is None and w.verify(REC, HONEST[0]).score == 1.0
        w.close()
    finally:
        v.close()


# -- the task -----------------------------------------------------------------------------------
def test_lean_task_data_prompt_and_records(project):
    import numpy as np

    from lit_alpha.tasks.lean import DEEPSEEK_HEADER, INSTRUCTION, LeanTask

    task = LeanTask(project_dir=str(project), repl_cmd=" ".join(STANDIN), workers=1, memory_mb=0)
    train, val, test = (task.problems(s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (9878, 200, 200)
    assert not {r["id"] for r in train} & {r["id"] for r in val}  # seen / unseen are disjoint
    rec = task.sample_train(np.random.default_rng(0))
    assert set(rec) == {"id", "theorem_statement", "informal_statement", "src_context", "theorem_full_name"}
    prompt = task.prompt(val[0])
    assert prompt.startswith(INSTRUCTION + "\n\n```lean4\n" + DEEPSEEK_HEADER + "/--")
    assert prompt.endswith(val[0]["theorem_statement"]) and prompt.rstrip().endswith(":= by")
    # every carried statement passes the source rules with a plain proof, so no theorem is unwinnable
    for r in train + val:
        assert rules.check_source(r["theorem_statement"] + "  omega\n", r["theorem_statement"]) is None, r["id"]
    # the prompt's continuation is what the verifier checks
    assert task.verifier.verify(val[0], "  norm_num\n```").score == 1.0
    task.verifier.close()
    own = LeanTask(project_dir=str(project), repl_cmd=" ".join(STANDIN), header=None, check_setup=False)
    assert own.problems("val")[0]["src_context"].startswith("import MiniF2F")


def test_lean_task_bad_file_is_one_line(project, tmp_path):
    from lit_alpha.tasks.lean import LeanTask

    task = LeanTask(project_dir=str(project), repl_cmd=" ".join(STANDIN), train_file=str(tmp_path / "x.parquet"))
    with pytest.raises(UserError, match="train_file"):
        task.problems("train")


def test_lean_configs_parse():
    from test_configs import resolve  # the resolved config, as fit sees it (lean/base.yaml + the trainer budget)

    for name in ("a025", "grpo"):
        cfg = resolve("--config", str(HERE.parent / "configs" / "lean" / f"{name}.yaml"))
        assert cfg["data.task.class_path"] == "lit_alpha.tasks.lean.LeanTask"
        assert cfg["data.prompts_per_step"] == 128 and cfg["data.n_samples"] == 4
        assert cfg["model.lr"] == 2e-6 and cfg["trainer.max_steps"] == 200
        assert cfg["data.max_new_tokens"] == 1024 and cfg["trainer.gradient_clip_val"] == 1.0


# -- real Lean (pytest -m lean; needs `lake` and LIT_ALPHA_LEAN_PROJECT) ---------------------
LEAN_PROJECT = os.environ.get("LIT_ALPHA_LEAN_PROJECT")
needs_lean = pytest.mark.skipif(not (LEAN_PROJECT and shutil.which("lake")),
                                reason="set LIT_ALPHA_LEAN_PROJECT to a Lean project with Mathlib and the REPL")


@pytest.mark.lean
@needs_lean
def test_real_lean_accepts_honest_and_rejects_exploits():
    from lit_alpha.tasks.lean import DEEPSEEK_HEADER

    v = LeanVerifier(project_dir=LEAN_PROJECT, workers=2, timeout_s=120, header_timeout_s=900)
    rec = dict(REC, src_context=DEEPSEEK_HEADER)
    try:
        v.preflight()
        honest = v.verify_batch([rec] * 3, HONEST[:3])
        assert [o.score for o in honest] == [1.0] * 3, honest
        real = [e for e in EXPLOITS if "standin:" not in e["completion"]]
        out = v.verify_batch([rec] * len(real), [e["completion"] for e in real])
        passed = [(e["id"], o) for e, o in zip(real, out) if o.score > 0]
        assert not passed
        # beneath the rules: Lean itself reports native_decide's axiom and sorry
        pool = v.pool
        assert pool.run([(DEEPSEEK_HEADER, STMT + "  subst h₀\n  native_decide\n", "t")])[0].reason == \
            "cheat:axiom:Lean.ofReduceBool"
        assert pool.run([(DEEPSEEK_HEADER, STMT + "  sorry\n", "t")])[0].reason == "cheat:sorry"
        assert pool.run([(DEEPSEEK_HEADER, STMT + "  linarith [h₀, (by norm_num : (1:ℕ) = 2)]\n", "t")])[0].score == 0
    finally:
        v.close()


@pytest.mark.lean
@needs_lean
def test_real_lean_task_proves_a_carried_theorem():
    from lit_alpha.tasks.lean import LeanTask

    task = LeanTask(project_dir=LEAN_PROJECT, workers=1, timeout_s=120, header_timeout_s=900)
    rec = next(r for r in task.problems("val") if r["id"] == "amc12a_2008_p4")
    out = task.verifier.verify(rec, "  sorry\n```")
    assert out.score == 0.0
    task.verifier.close()


# -- the rules on arbitrary text ----------------------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_lean_bits = st.sampled_from(["/-", "-/", "--", "\n", "\"", "`", "«", "sorry", "#exit", "```lean4\n", "```", " ",
                              STMT, "theorem t", "set_option", "maxHeartbeats", "@[", "native_decide", "ℕ", "\x00"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=500), st.lists(_lean_bits, max_size=60).map("".join)))
def test_rules_are_total_and_fast_on_any_text(text):
    start = time.perf_counter()
    code = rules.extract_proof(text, 2000)
    assert code is None or len(code) <= 2000
    why = rules.check_source(text, STMT)
    assert why is None or why.startswith("cheat:")
    rules.strip_comments(text)
    rules.parse_axioms([{"severity": "info", "data": text}], "t")
    assert time.perf_counter() - start < 0.5


def test_trainer_guard_counts_lean_faults(project):
    """Through the trainer's GuardedVerifier (in-process, as the Lean configs run it): worker faults
    become ``timeout``/``crash`` verdicts that the guard counts into ``verifier/<reason>_frac``."""
    from lit_alpha.verifiers.guarded import GuardedVerifier

    v = verifier(project, timeout_s=1.0, workers=2)
    guard = GuardedVerifier(v, timeout_s=0)
    try:
        comps = [HONEST[0], "  -- standin:hang\n  omega\n```", "  -- standin:crash\n  omega\n```", "  sorry\n```"]
        out = guard.verify_batch([REC] * 4, comps)
        assert [o.reason for o in out] == ["ok", "timeout", "crash", "cheat:sorry"]
        assert guard.faults == {"timeout": 1, "crash": 1}
    finally:
        v.close()


def test_lean_task_can_check_on_a_kimina_server_instead_of_local_workers():
    """``server_url`` selects the HTTP backend (no local Lean needed, no preflight); the source rules
    still run locally, so a cheating proof is rejected without any request being sent."""
    from lit_alpha.tasks.lean import LeanTask
    from lit_alpha.verifiers.lean.kimina import KiminaLeanVerifier

    task = LeanTask(server_url="http://127.0.0.1:9", server_batch_size=4)  # nothing listens there
    assert isinstance(task.verifier, KiminaLeanVerifier) and task.verifier.batch_size == 4
    record = task.problems("val")[0]
    verdict = task.verifier.verify(record, "  sorry\n```")
    assert verdict.score == 0.0 and not verdict.reason.startswith("crash")


def test_verifier_works_again_after_close(project):
    """Teardown closes the pool (e.g. after the step-0 validation); the fit that follows must get a
    fresh pool, not a closed one."""
    v = verifier(project, workers=1)
    try:
        assert v.verify(REC, HONEST[0]).score == 1.0
        v.close()
        assert v.verify(REC, HONEST[0]).score == 1.0
    finally:
        v.close()
