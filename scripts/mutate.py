"""Mutation check of the core: small plausible bugs put in one at a time, each run against the tests
that cover its module; a mutant that no test notices ("survived") marks a gap in the tests.

    python scripts/mutate.py                      # every configured module (about an hour on 2 cores)
    python scripts/mutate.py --modules objectives/grpo.py,metrics/pass_at_k.py
    python scripts/mutate.py --resume             # skip the mutants already in the results file (--out)
    python scripts/mutate.py --recheck            # ... and run its survivors again (after adding tests)
    python scripts/mutate.py --list               # the mutants, without running anything
    python scripts/mutate.py --summary            # the table of every mutant already in the results file

Configuration: ``[tool.lit_alpha.mutate]`` in ``pyproject.toml``: ``seed``, ``max_per_module`` (a seeded
sample of each module's mutants when it has more), ``timeout_factor`` / ``min_timeout_s`` (a mutant whose
tests run longer than ``max(min_timeout_s, timeout_factor x the unmutated run)`` counts as a timeout,
i.e. caught), and one ``[[tool.lit_alpha.mutate.module]]`` per module: ``path`` (under ``lit_alpha/``),
``tests`` (the files run with ``pytest -x -q``) and optionally ``functions`` (only these are mutated) and
``max_mutants`` (this module's own sample size, over ``--max-per-module`` and ``max_per_module``).

Operators (Python's ``ast``; each mutant changes one spot): ``+``/``-`` and ``*``/``/`` swapped, ``//`` to
``/``, ``**`` to ``*``; comparisons shifted (``<`` to ``<=``, ``==`` to ``!=``, ``in`` to ``not in`` ...);
``and``/``or`` swapped; a unary ``-`` or ``not`` dropped; an integer constant off by one (``n`` to ``n+1``);
a ``return`` value replaced by ``None``; one key deleted from a dict literal; one statement (a call,
an augmented or attribute/item assignment) replaced by ``pass``. Docstrings, annotations, ``raise``
messages and lines marked ``# pragma: no mutate`` are left alone.

Each run works in a copy of the repository (``lit_alpha/``, ``tests/``, ``configs/``, ``pyproject.toml``)
under a temporary directory, taken afresh for each module, with no byte-code cache, so the working tree
is never touched. Known-equivalent mutants (no test can catch them: the program means the same) are
listed in ``scripts/mutants_equivalent.toml`` with a reason each and reported apart, not as survivors.

Output: one line per mutant as it finishes, then per module ``mutants killed survived timeouts
equivalent``, the score (caught / non-equivalent) and every survivor as ``file:line  mutation  | source``.
``--out`` (default ``mutants.json``) keeps every result, so an interrupted check resumes with ``--resume``.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import tomllib

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENT = ROOT / "scripts" / "mutants_equivalent.toml"
COPY = ("lit_alpha", "tests", "configs", "pyproject.toml")

_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
         ast.Pow: ast.Mult}
_CMP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
        ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In}
_SYM = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Pow: "**",
        ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.Is: "is",
        ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in", ast.And: "and", ast.Or: "or"}


@dataclass
class Mutant:
    """One mutation: the ``index``-th mutable spot of ``path`` (``lineno``, ``col``), described."""

    path: str
    index: int
    lineno: int
    col: int
    mutation: str
    source: str  # the original line, stripped
    status: str = ""  # killed | survived | timeout | equivalent | invalid
    seconds: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.path}:{self.index}:{self.mutation}"


# -- finding and applying mutations ---------------------------------------------------------
def _skipped_nodes(tree: ast.AST) -> set[int]:
    """ids of nodes never mutated: docstrings, annotations, raise statements, ``__main__`` blocks."""
    skip: set[int] = set()

    def all_of(node: ast.AST | None) -> None:
        if node is not None:
            skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            all_of(body[0])
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            all_of(node.returns)
            for a in node.args.args + node.args.kwonlyargs + node.args.posonlyargs:
                all_of(a.annotation)
        if isinstance(node, ast.AnnAssign):
            all_of(node.annotation)
        if isinstance(node, ast.Raise):
            all_of(node)
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            all_of(node)
    return skip


def _in_functions(tree: ast.Module, names: list[str] | None) -> set[int] | None:
    """ids of nodes inside the named functions (or methods, ``Class.method`` or ``method``); None: all."""
    if not names:
        return None
    keep: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                        (f"{node.name}.{item.name}" in names or item.name in names):
                    keep.update(id(n) for n in ast.walk(item))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in names:
            keep.update(id(n) for n in ast.walk(node))
    return keep


def _spots(node: ast.AST) -> Iterator[tuple[str, callable]]:
    """The mutations of one node: (description, apply) where apply mutates the node in place and returns
    the replacement node (or the node itself)."""
    if isinstance(node, ast.BinOp) and type(node.op) in _SWAP:
        new = _SWAP[type(node.op)]
        yield f"{_SYM[type(node.op)]} -> {_SYM[new]}", lambda n: (setattr(n, "op", new()), n)[1]
    elif isinstance(node, ast.AugAssign) and type(node.op) in _SWAP:
        new = _SWAP[type(node.op)]
        yield f"{_SYM[type(node.op)]}= -> {_SYM[new]}=", lambda n: (setattr(n, "op", new()), n)[1]
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in _CMP:
                new = _CMP[type(op)]

                def apply(n, i=i, new=new):
                    n.ops[i] = new()
                    return n
                yield f"{_SYM[type(op)]} -> {_SYM[new]}", apply
    if isinstance(node, ast.BoolOp):
        new = ast.Or if isinstance(node.op, ast.And) else ast.And
        yield f"{_SYM[type(node.op)]} -> {_SYM[new]}", lambda n: (setattr(n, "op", new()), n)[1]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
        yield f"drop unary {'-' if isinstance(node.op, ast.USub) else 'not'}", lambda n: n.operand
    if isinstance(node, ast.Constant) and type(node.value) is int:
        yield f"{node.value} -> {node.value + 1}", lambda n: ast.Constant(n.value + 1)
    if isinstance(node, ast.Return) and node.value is not None and \
            not (isinstance(node.value, ast.Constant) and node.value.value is None):
        yield "return value -> None", lambda n: (setattr(n, "value", ast.Constant(None)), n)[1]
    if isinstance(node, ast.Dict):
        for i, k in enumerate(node.keys):
            label = ast.unparse(k) if k is not None else "**"

            def drop(n, i=i):
                del n.keys[i], n.values[i]
                return n
            yield f"delete dict key {label[:40]}", drop
    if isinstance(node, (ast.Expr, ast.AugAssign)) or (
            isinstance(node, ast.Assign) and all(isinstance(t, (ast.Attribute, ast.Subscript)) for t in node.targets)):
        yield "delete statement", lambda n: ast.Pass()


def find_mutants(path: Path, rel: str, functions: list[str] | None = None) -> list[Mutant]:
    """Every mutation of the module at ``path`` (``rel``: its name in reports), in a fixed order."""
    text = path.read_text()
    lines = text.splitlines()
    tree = ast.parse(text)
    skip, keep = _skipped_nodes(tree), _in_functions(tree, functions)
    out: list[Mutant] = []
    count = 0  # the spot's index, as mutated_source enumerates them
    for node in _walk(tree):
        if id(node) in skip or (keep is not None and id(node) not in keep) or not hasattr(node, "lineno"):
            continue
        line = lines[node.lineno - 1]
        if "pragma: no mutate" in line:
            continue
        for desc, _ in _spots(node):
            count += 1
            if desc == "delete statement" and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue  # an attribute's docstring: deleting it changes nothing
            out.append(Mutant(rel, count - 1, node.lineno, node.col_offset, desc, line.strip()))
    return out


def _walk(tree: ast.AST) -> Iterator[ast.AST]:
    """Depth-first, source order (a stable enumeration: the same index means the same spot)."""
    yield tree
    for child in ast.iter_child_nodes(tree):
        yield from _walk(child)


def mutated_source(path: Path, mutant: Mutant, functions: list[str] | None = None) -> str:
    """The module's source with ``mutant`` applied (re-enumerating the spots in the same order)."""
    tree = ast.parse(path.read_text())
    skip, keep = _skipped_nodes(tree), _in_functions(tree, functions)
    lines = path.read_text().splitlines()
    count = 0
    target: tuple[ast.AST, callable] | None = None
    for node in _walk(tree):
        if id(node) in skip or (keep is not None and id(node) not in keep) or not hasattr(node, "lineno"):
            continue
        if "pragma: no mutate" in lines[node.lineno - 1]:
            continue
        for desc, apply in _spots(node):
            if count == mutant.index:
                assert desc == mutant.mutation and node.lineno == mutant.lineno, (desc, mutant)
                target = (node, apply)
            count += 1
    if target is None:
        raise ValueError(f"no mutation {mutant.key}")
    node, apply = target

    class Replace(ast.NodeTransformer):
        def generic_visit(self, n: ast.AST) -> ast.AST:
            if n is node:
                return apply(n)  # a fresh parse: mutating in place touches nothing else
            return super().generic_visit(n)

    new = ast.fix_missing_locations(Replace().visit(tree))
    return ast.unparse(new) + "\n"


# -- running -----------------------------------------------------------------------------------
def load_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["lit_alpha"]["mutate"]


def load_equivalent() -> dict[tuple[str, str, str, int | None], str]:
    """``(file, source line, mutation, column or None) -> reason`` of the known-equivalent mutants (the
    column tells apart two mutants of one line with the same name)."""
    if not EQUIVALENT.exists():
        return {}
    rows = tomllib.loads(EQUIVALENT.read_text()).get("equivalent", [])
    return {(r["file"], r["line"].strip(), r["mutation"], r.get("col")): r["reason"] for r in rows}


def is_equivalent(m: Mutant, equivalent: dict) -> bool:
    return any((m.path, m.source, m.mutation, col) in equivalent for col in (None, m.col))


def snapshot(dest: Path) -> None:
    """A fresh copy of what the tests need, without byte-code caches."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "mlruns", ".pytest_cache")
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, dest / name)


def run_tests(work: Path, tests: list[str], timeout: float) -> tuple[str, float]:
    """``pytest -x -q`` on ``tests`` in ``work``: ('pass' | 'fail' | 'timeout', seconds)."""
    env = {**os.environ, "PYTHONPATH": str(work), "PYTHONDONTWRITEBYTECODE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                            cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t0
    finally:  # a timeout, or this script interrupted: the tests' whole process group goes too
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return ("pass" if code == 0 else "fail"), time.perf_counter() - t0


_BASELINE: dict[tuple[str, ...], float] = {}  # test files -> seconds of their unmutated run


def check_module(spec: dict, cfg: dict, results: dict[str, dict], equivalent: dict, out: Path,
                 listing: bool = False, max_per_module: int | None = None,
                 again: set[str] | None = None) -> list[Mutant]:
    rel = f"lit_alpha/{spec['path']}"
    mutants = find_mutants(ROOT / rel, rel, spec.get("functions"))
    total = len(mutants)
    limit = int(spec.get("max_mutants") or max_per_module or cfg.get("max_per_module", 30))  # the module's own first
    if total > limit:  # a seeded sample, in source order, plus the survivors to run again (--recheck)
        rng = random.Random(f"{cfg.get('seed', 0)}:{rel}")
        chosen = {m.key for m in rng.sample(mutants, limit)} | (again or set())
        mutants = [m for m in mutants if m.key in chosen]
    print(f"== {rel}: {len(mutants)} of {total} mutants; tests {' '.join(spec['tests'])}", flush=True)
    if listing:
        for m in mutants:
            print(f"  {m.path}:{m.lineno}  {m.mutation}  | {m.source}")
        return mutants
    todo = [m for m in mutants if m.key not in results]
    for m in mutants:
        if m.key in results:
            m.status, m.seconds = results[m.key]["status"], results[m.key]["seconds"]
    if todo:
        with tempfile.TemporaryDirectory(prefix="mutate-") as tmp:
            work = Path(tmp) / "repo"
            snapshot(work)
            tests = tuple(spec["tests"])
            if tests not in _BASELINE:  # the unmutated tests pass (once per set of test files in a run)
                base, seconds = run_tests(work, spec["tests"], timeout=1800)
                if base != "pass":
                    print(f"   the unmutated tests do not pass ({base}): module skipped", flush=True)
                    return []
                _BASELINE[tests] = seconds
            seconds = _BASELINE[tests]
            timeout = max(float(cfg.get("min_timeout_s", 60)), float(cfg.get("timeout_factor", 3)) * seconds)
            print(f"   unmutated: {seconds:.0f}s; timeout per mutant {timeout:.0f}s", flush=True)
            target = work / rel
            original = target.read_text()
            try:
                for m in todo:
                    if is_equivalent(m, equivalent):
                        m.status = "equivalent"
                    else:
                        try:
                            code = mutated_source(ROOT / rel, m, spec.get("functions"))
                            compile(code, rel, "exec")
                        except (SyntaxError, ValueError, AssertionError):
                            m.status = "invalid"
                        else:
                            target.write_text(code)
                            verdict, m.seconds = run_tests(work, spec["tests"], timeout)
                            m.status = {"pass": "survived", "fail": "killed", "timeout": "timeout"}[verdict]
                            target.write_text(original)
                    results[m.key] = asdict(m)
                    out.write_text(json.dumps(results, indent=1))
                    print(f"   {m.status:10s} {m.path}:{m.lineno}  {m.mutation}  ({m.seconds:.0f}s)", flush=True)
            finally:
                target.write_text(original)
    for m in mutants:  # a reason added after the run still counts
        if m.status == "survived" and is_equivalent(m, equivalent):
            m.status = "equivalent"
    return mutants


def report(by_module: dict[str, list[Mutant]]) -> float:
    print(f"\n{'module':42s} {'mutants':>7s} {'killed':>6s} {'survived':>8s} {'timeouts':>8s} {'equiv':>5s}")
    caught = relevant = 0
    survivors: list[Mutant] = []
    for rel, ms in by_module.items():
        n = {s: sum(m.status == s for m in ms) for s in ("killed", "survived", "timeout", "equivalent", "invalid")}
        print(f"{rel:42s} {len(ms) - n['invalid']:7d} {n['killed']:6d} {n['survived']:8d} {n['timeout']:8d} "
              f"{n['equivalent']:5d}")
        caught += n["killed"] + n["timeout"]
        relevant += n["killed"] + n["timeout"] + n["survived"]
        survivors += [m for m in ms if m.status == "survived"]
    score = caught / relevant if relevant else 1.0
    print(f"\nscore: {caught}/{relevant} non-equivalent mutants caught = {100 * score:.1f}%")
    if survivors:
        print("survivors:")
        for m in survivors:
            print(f"  {m.path}:{m.lineno}  {m.mutation}  | {m.source}")
    return score


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", default="", help="comma-separated paths under lit_alpha/ (default: all configured)")
    parser.add_argument("--out", default="mutants.json", help="results file (JSON), written as mutants finish")
    parser.add_argument("--resume", action="store_true", help="skip the mutants already in --out")
    parser.add_argument("--recheck", action="store_true",
                        help="with --resume: run the survivors in --out again (after adding tests)")
    parser.add_argument("--list", action="store_true", help="list the mutants only")
    parser.add_argument("--summary", action="store_true",
                        help="report every mutant already in --out (of the selected modules), run nothing")
    parser.add_argument("--max-per-module", type=int, default=None,
                        help="sample at most this many mutants per module (default: the configuration's)")
    args = parser.parse_args(argv)
    cfg = load_config()
    wanted = [m.strip() for m in args.modules.split(",") if m.strip()]
    by_path = {s["path"]: s for s in cfg["module"]}
    specs = [by_path[w] for w in wanted if w in by_path] if wanted else list(cfg["module"])  # in the order asked
    if wanted and len(specs) != len(wanted):
        missing = set(wanted) - {s["path"] for s in specs}
        parser.error(f"not configured in [tool.lit_alpha.mutate]: {', '.join(sorted(missing))}")
    out = Path(args.out)
    results = json.loads(out.read_text()) if (args.resume or args.recheck or args.summary) and out.exists() else {}
    again: set[str] = set()
    if args.recheck:  # the selected modules' survivors run again; everything else is kept as it was
        chosen = {f"lit_alpha/{s['path']}" for s in specs}
        again = {k for k, v in results.items() if v["status"] == "survived" and v["path"] in chosen}
        results = {k: v for k, v in results.items() if k not in again}
    equivalent = load_equivalent()
    if args.summary:
        by_module: dict[str, list[Mutant]] = {}
        for spec in specs:
            rel = f"lit_alpha/{spec['path']}"
            current = {m.key for m in find_mutants(ROOT / rel, rel, spec.get("functions"))}
            done = [Mutant(**v) for k, v in results.items() if v["path"] == rel and k in current]
            for m in done:
                if m.status == "survived" and is_equivalent(m, equivalent):
                    m.status = "equivalent"
            by_module[rel] = sorted(done, key=lambda m: m.index)
        score = report(by_module)
        return 0 if score >= float(cfg.get("target", 0.95)) else 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # kill PID: clean up the copy and the tests
    by_module = {f"lit_alpha/{s['path']}": check_module(s, cfg, results, equivalent, out, args.list,
                                                        args.max_per_module, again) for s in specs}
    if args.list:
        return 0
    score = report(by_module)
    return 0 if score >= float(cfg.get("target", 0.95)) else 1


if __name__ == "__main__":
    sys.exit(main())
