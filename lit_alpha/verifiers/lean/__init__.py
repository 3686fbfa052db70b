"""Lean 4 whole-proof verification through the leanprover-community REPL.

* :mod:`.rules`: pure acceptance rules (extraction, source rules, Lean's messages, axioms);
* :mod:`.repl`: one REPL process (JSON protocol, header environments, timeouts, memory limit);
* :mod:`.pool`: a pool of REPL workers, replaced on timeout/crash/garbage;
* :mod:`.verifier`: :class:`LeanVerifier`, the :class:`~lit_alpha.verifiers.base.Verifier`.
"""

from lit_alpha.verifiers.lean.rules import ALLOWED_AXIOMS, accept_messages, check_source, extract_proof
from lit_alpha.verifiers.lean.verifier import LeanVerifier

__all__ = ["ALLOWED_AXIOMS", "LeanVerifier", "accept_messages", "check_source", "extract_proof"]
