"""Lean 4 theorem proving (the α-DPG paper's headline task): write a proof, Lean checks it.

Data: parquet files with the columns ``theorem_statement`` (``theorem name ... := by``),
``informal_statement`` (a ``/-- ... -/`` docstring), ``src_context`` (the header) and
``theorem_full_name``. The defaults are the paper's sets, carried in ``lit_alpha/assets/lean/``
(Apache-2.0, see the NOTICE.md there): train on ``mff-lwb-10k-seen`` (9878 theorems), validate and
test on ``mff-lwb-unseen-200`` (disjoint from the training theorems).

Prompt: DeepSeek-Prover-V1.5's chain-of-thought format, ending inside an open ```` ```lean4 ```` block
right after the formal statement, so the model continues with the proof::

    Complete the following Lean 4 code with explanatory comments preceding each line of code:

    ```lean4
    <header><informal statement docstring><formal statement>

Header: by default DeepSeek-Prover-V1.5's (``import Mathlib``, ``import Aesop``, ``maxHeartbeats
400000``, ``open BigOperators Real Nat Topology Rat``), which any Lean project with Mathlib can
import; ``header: null`` uses each row's own ``src_context`` (``import MiniF2F.Minif2fImport``, which
needs a project that provides that module). The header is put in each record's ``src_context``, so
the prompt and the verifier always agree on it.

Verification: :class:`~lit_alpha.verifiers.lean.LeanVerifier` (the fields below are passed to it);
``server_url`` selects a kimina-lean-server and ``dojo_repo_url``/``dojo_commit`` LeanDojo instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lit_alpha.errors import UserError
from lit_alpha.tasks.base import Record, Task

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "lean"
TRAIN_FILE = str(ASSETS / "mff-lwb-10k-seen.parquet")
EVAL_FILE = str(ASSETS / "mff-lwb-unseen-200.parquet")
DEEPSEEK_HEADER = (
    "import Mathlib\nimport Aesop\n\nset_option maxHeartbeats 400000\n\nopen BigOperators Real Nat Topology Rat\n\n"
)
INSTRUCTION = "Complete the following Lean 4 code with explanatory comments preceding each line of code:"
COLUMNS = ("theorem_statement", "informal_statement", "src_context", "theorem_full_name")


def load_theorems(path: str, prefix: str, header: str | None = None) -> list[Record]:
    """Records ``{id, theorem_statement, informal_statement, src_context, theorem_full_name}``.

    ``header`` (if not None) replaces every row's ``src_context``. Rows are checked: the statement
    must start with ``theorem <theorem_full_name>``; a malformed file is a :class:`UserError` naming it.
    """
    try:
        import pandas as pd

        frame = pd.read_parquet(path, columns=list(COLUMNS))
    except ImportError as exc:  # pragma: no cover - pandas/pyarrow come with mlflow
        raise UserError(f"{prefix}: reading parquet needs pandas and pyarrow ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - missing file, missing column, not parquet
        raise UserError(f"{prefix}: cannot read {path}: {type(exc).__name__}: {exc}") from None
    records: list[Record] = []
    for i, row in enumerate(frame.itertuples(index=False)):
        rec: dict[str, Any] = {k: getattr(row, k) for k in COLUMNS}
        if not all(isinstance(rec[k], str) for k in COLUMNS):
            raise UserError(f"{prefix}: {path} row {i}: every column of {COLUMNS} must be text")
        words = rec["theorem_statement"].split(None, 2)
        if len(words) < 2 or words[0] not in ("theorem", "lemma") or words[1] != rec["theorem_full_name"].strip():
            raise UserError(f"{prefix}: {path} row {i}: theorem_statement does not declare "
                            f"theorem {rec['theorem_full_name']!r}")
        if header is not None:
            rec["src_context"] = header
        rec["id"] = rec["theorem_full_name"].strip()
        records.append(rec)
    if not records:
        raise UserError(f"{prefix}: {path} has no rows")
    return records


def lean_prompt(record: Record) -> str:
    """DeepSeek-Prover-V1.5's chain-of-thought prompt for ``record``."""
    header = record["src_context"]
    if header and not header.endswith("\n"):
        header += "\n"
    informal = record.get("informal_statement") or ""
    if informal and not informal.endswith("\n"):
        informal += "\n"
    return f"{INSTRUCTION}\n\n```lean4\n{header}{informal}{record['theorem_statement']}"


class LeanTask(Task):
    """Lean 4 whole-proof generation, verified by the Lean REPL.

    Args:
        project_dir: the Lean 4 project with Mathlib and the REPL (``lake exe repl`` runs there).
            Required for training/evaluation.
        train_file: parquet of training theorems (default: the carried ``mff-lwb-10k-seen``).
        val_file: parquet of validation theorems (default: the carried ``mff-lwb-unseen-200``).
        test_file: parquet of test theorems (default: the carried ``mff-lwb-unseen-200``).
        header: the Lean header every proof is checked under (see the module doc); None: each row's
            ``src_context``.
        num_val: use only the first ``num_val`` validation theorems (None: all).
        repl_cmd: REPL command line, run in ``project_dir``.
        workers: REPL worker processes.
        timeout_s: per-proof time limit, seconds.
        header_timeout_s: time limit for a fresh worker to import the header, seconds.
        memory_mb: address-space limit per worker, MiB (0: none).
        max_chars: longest proof block accepted.
        max_proofs_per_worker: recycle a worker after this many proofs.
        check_setup: check at start-up that ``project_dir`` and the REPL command exist (a clear error
            naming what to install instead of 0 rewards).
        server_url: check proofs on a kimina-lean-server at this URL instead of local REPL workers
            (the same source rules run locally first; ``project_dir`` and the REPL fields are unused).
        server_api_key: the server's API key, if it needs one.
        server_batch_size: proofs per HTTP request to the server.
        dojo_repo_url: check proofs with LeanDojo (``pip install "lit_alpha[lean]"``) in this git
            repository, traced by LeanDojo, instead of local REPL workers: each tactic proof runs as one
            tactic block from the theorem's initial state in its own file (the same source rules run
            first; no axioms query, see :mod:`lit_alpha.verifiers.lean.dojo`). Needs ``dojo_commit``;
            exclusive with ``server_url``.
        dojo_commit: the commit of ``dojo_repo_url``.
        dojo_file_path: the theorems' file in that repository (rows with a ``file_path`` use their own).
    """

    def __init__(
        self,
        project_dir: str | None = None,
        train_file: str = TRAIN_FILE,
        val_file: str = EVAL_FILE,
        test_file: str = EVAL_FILE,
        header: str | None = DEEPSEEK_HEADER,
        num_val: int | None = None,
        repl_cmd: str = "lake exe repl",
        workers: int = 8,
        timeout_s: float = 60.0,
        header_timeout_s: float = 600.0,
        memory_mb: int = 16384,
        max_chars: int = 20000,
        max_proofs_per_worker: int = 500,
        check_setup: bool = True,
        server_url: str | None = None,
        server_api_key: str | None = None,
        server_batch_size: int = 32,
        dojo_repo_url: str | None = None,
        dojo_commit: str | None = None,
        dojo_file_path: str | None = None,
    ) -> None:
        from lit_alpha.verifiers.lean.dojo import LeanDojoVerifier
        from lit_alpha.verifiers.lean.kimina import KiminaLeanVerifier
        from lit_alpha.verifiers.lean.verifier import LeanVerifier

        if num_val is not None and num_val < 1:
            raise ValueError(f"num_val must be >= 1, got {num_val}")
        self.files = {"train": train_file, "val": val_file, "test": test_file}
        self.header, self.num_val = header, num_val
        if server_url is not None and dojo_repo_url is not None:
            raise UserError("data.task.init_args: set server_url or dojo_repo_url, not both")
        if dojo_repo_url is not None:
            self.verifier = LeanDojoVerifier(repo_url=dojo_repo_url, commit=dojo_commit, file_path=dojo_file_path,
                                             timeout_s=timeout_s, max_chars=max_chars)
            if check_setup:
                self.verifier.preflight(field="data.task.init_args.dojo_repo_url")
            use_server = True
        elif server_url is not None:
            self.verifier = KiminaLeanVerifier(url=server_url, timeout_s=timeout_s, batch_size=server_batch_size,
                                               api_key=server_api_key, max_chars=max_chars)
            use_server = True
        else:
            self.verifier = LeanVerifier(project_dir=project_dir, repl_cmd=repl_cmd, workers=workers,
                                         timeout_s=timeout_s, header_timeout_s=header_timeout_s,
                                         memory_mb=memory_mb, max_chars=max_chars,
                                         max_proofs_per_worker=max_proofs_per_worker)
            use_server = False
        if check_setup and not use_server:
            self.verifier.preflight(field="data.task.init_args.project_dir")
        self._cache: dict[str, list[Record]] = {}

    def problems(self, split: str) -> list[Record]:
        if split not in self.files:
            raise ValueError(f"split must be one of train/val/test, got {split!r}")
        if split not in self._cache:
            rows = load_theorems(self.files[split], f"data.task.init_args.{split}_file", self.header)
            if split == "val" and self.num_val is not None:
                rows = rows[: self.num_val]
            self._cache[split] = rows
        return self._cache[split]

    def sample_train(self, rng: np.random.Generator) -> Record:
        rows = self.problems("train")
        return rows[int(rng.integers(len(rows)))]

    def prompt(self, record: Record) -> str:
        return lean_prompt(record)
