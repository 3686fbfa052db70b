"""The source rule against trusting more than Lean's kernel: axiom-backed shortcuts and native evaluation.

A list of banned names misses siblings (``Lean.ofReduceBool`` was banned, ``Lean.ofReduceNat`` was
not; ``native_decide`` was, ``decide +native`` was not). This rule is derived instead from where
Lean 4 core defines every way for a proof to make the kernel accept the compiler's word
(github.com/leanprover/lean4):

1. ``src/Init/Core.lean``, section "Kernel reduction hints" (namespace ``Lean``)::

       axiom trustCompiler : True      -- "Depends on the correctness of the Lean compiler,
                                       --  interpreter, and all [implemented_by ...] and [extern ...]"
       opaque reduceBool (b : Bool) : Bool
       opaque reduceNat (n : Nat) : Nat
       axiom ofReduceBool (a b : Bool) (h : reduceBool a = b) : a = b
       axiom ofReduceNat (a b : Nat) (h : reduceNat a = b) : a = b

   ``Lean.reduceBool`` and ``Lean.reduceNat`` are the only constants the kernel evaluates with
   compiled code ("When the kernel tries to reduce a term ``Lean.reduceBool c``, it will invoke the
   Lean interpreter to evaluate ``c``", their docstring); the ``ofReduce*`` axioms are how a proof
   uses that result. **Rule**: a name any of whose dotted pieces starts with ``ofReduce``,
   is ``reduceBool``/``reduceNat`` (``open Lean`` makes them bare), starts ``Lean.reduce``, or is
   ``trustCompiler``. (Simprocs such as ``Nat.reduceAdd`` or ``reduceIte`` are kernel-checked
   rewriting and stay allowed.)
2. Tactics that run compiled code and assert its answer: ``native_decide``, ``decide +native`` /
   ``decide (config := {native := true})`` (the ``native`` field of ``DecideConfig``,
   ``src/Init/Tactics.lean``; both go through ``elabNativeDecideCore``,
   ``src/Lean/Elab/Tactic/ElabTerm.lean``, ``Decide.lean`` in recent versions), and
   ``bv_decide``/``bv_check`` (``src/Std/Tactic/BVDecide``, reflection through the native check of
   an LRAT certificate). Up to Lean 4.28 these reach ``Lean.ofReduceBool``; from 4.29
   (``src/Lean/Meta/Native.lean``, ``nativeEqTrue``) each computation adds a fresh axiom
   ``<decl>._native.<tactic>.ax_<k>``. **Rule**: a name with a piece ``native``, a piece starting
   ``native_`` or containing ``_native``; ``bv_decide``, ``bv_check``; and ``decide`` followed by
   any option but ``+kernel`` (a config term is an ordinary term, so ``(config := ⟨…⟩)`` could set
   ``native`` positionally, without the word).
3. ``implemented_by``/``extern``/``csimp`` (what compiled code computes) are attributes or
   declarations, which the other source rules already reject (``@[``, ``attribute``, the keywords).

The REPL and kimina backends also check ``#print axioms`` (only ``propext``, ``Classical.choice``,
``Quot.sound``), which catches all of these whatever they are called; LeanDojo cannot, so there this
rule (and :func:`search_reason`) is the guarantee. What no source rule can see: a lemma of the
environment that was itself proved natively (only the axioms step catches that).
"""

from __future__ import annotations

from typing import Sequence

NATIVE_TACTICS = frozenset({"bv_decide", "bv_check"})
KERNEL_PIECES = frozenset({"reduceBool", "reduceNat", "trustCompiler"})
ALLOWED_DECIDE_OPTIONS = frozenset({"kernel"})  # `decide +kernel`: the kernel decides, no native code
# search tactics that close the goal they cannot solve with `sorry` (src/Lean/Elab/Tactic/LibrarySearch.lean:
# `apply?` always admits the goal after its suggestions, `exact?` when it finds nothing)
ADMITTING_SEARCH = ("apply", "exact")


def piece_reason(tok: str) -> str | None:
    """The family member named by identifier token ``tok`` (``Lean.ofReduceNat``, ``native_decide``,
    ``x._native.decide.ax_1``, ``trustCompiler`` ...), or None."""
    name = tok.strip(".")
    if name.startswith("Lean.reduce") or name.startswith("_root_.Lean.reduce"):
        return name[:48]
    if name in NATIVE_TACTICS:
        return name
    for piece in name.split("."):
        if piece.startswith("ofReduce") or piece in KERNEL_PIECES:
            return piece[:48]
        if piece == "native" or piece.startswith("native_") or "_native" in piece:
            return piece[:48]
    return None


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _ident_at(text: str, i: int) -> str:
    j = i
    while j < len(text) and (text[j].isalnum() or text[j] in "_'."):
        j += 1
    return text[i:j]


def decide_option_reason(proof: str, offset: int) -> str | None:
    """``decide`` at ``offset`` followed by an option other than ``+kernel`` (``+native``, ``-x``,
    ``(config := …)``, ``(native := true)``): ``"decide_option"``; else None."""
    i = _skip_space(proof, offset + len("decide"))
    c = proof[i:i + 1]
    if c in ("+", "-"):
        opt = _ident_at(proof, i + 1)
        if opt and not (c == "+" and opt in ALLOWED_DECIDE_OPTIONS):
            return "decide_option"
    elif c == "(":
        j = _skip_space(proof, i + 1)
        name = _ident_at(proof, j)
        if name and proof[_skip_space(proof, j + len(name)):].startswith(":="):
            return "decide_option"
    return None


def trust_reason(proof: str, toks: Sequence[tuple[int, str]]) -> str | None:
    """The reason (``ofReduceNat``, ``native``, ``decide_option`` ...) if the comment-free ``proof``
    (tokenized as ``toks``) asks Lean to trust compiled code, else None."""
    for _, tok in toks:
        why = piece_reason(tok)
        if why:
            return why
    for offset, tok in toks:
        if tok == "decide":
            why = decide_option_reason(proof, offset)
            if why:
                return why
    return None


def search_reason(proof: str, toks: Sequence[tuple[int, str]]) -> str | None:
    """``apply?``/``exact?`` (which admit the goal with ``sorry``), for backends that cannot see Lean's
    ``declaration uses 'sorry'`` warning or the axioms (LeanDojo); else None."""
    for offset, tok in toks:
        if tok in ADMITTING_SEARCH and proof[offset + len(tok):offset + len(tok) + 1] == "?":
            return f"{tok}?"
    return None
