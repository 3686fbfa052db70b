"""Lean 4 whole-proof verification: local REPL workers, a kimina-lean-server, or LeanDojo.

* :mod:`.rules`: pure acceptance rules (extraction, source rules, Lean's messages, axioms);
* :mod:`.repl`: one REPL process (JSON protocol, header environments, timeouts, memory limit);
* :mod:`.pool`: a pool of REPL workers, replaced on timeout/crash/garbage;
* :mod:`.verifier`: :class:`LeanVerifier`, the :class:`~lit_alpha.verifiers.base.Verifier`;
* :mod:`.kimina`: :class:`KiminaLeanVerifier`, the same rules with proofs checked by a server over HTTP;
* :mod:`.dojo`: :class:`LeanDojoVerifier`, the proof run as one tactic block in a LeanDojo traced repo.

All three share the rules' front half (:func:`.rules.valid_record`, :func:`.rules.proof_body`).
"""

from lit_alpha.verifiers.lean.rules import ALLOWED_AXIOMS, accept_messages, check_source, extract_proof
from lit_alpha.verifiers.lean.verifier import LeanVerifier

__all__ = ["ALLOWED_AXIOMS", "LeanVerifier", "accept_messages", "check_source", "extract_proof"]
