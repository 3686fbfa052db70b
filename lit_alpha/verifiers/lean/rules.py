"""Pure, bounded acceptance rules for Lean 4 whole proofs (no Lean needed; no regular expressions).

Three layers decide whether a completion proves its theorem; this module holds the two that need no
Lean, and the parsing of what Lean says:

1. **Source rules** (:func:`extract_proof`, :func:`check_source`), before any REPL call: the last
   complete ```` ```lean4 ```` block, at most ``max_chars`` long, must contain the given theorem
   statement exactly once, outside comments, at the start of a line; the text after it (the proof)
   must not contain an escape hatch: ``sorry``/``admit``, ``axiom``, ``#``-commands (``#exit``,
   ``#eval``, ``#print`` ...), ``run_cmd``/``run_tac``/``by_elab``, ``IO``, ``unsafe``,
   ``implemented_by``/``extern``, ``macro``/``elab``/``syntax``/``notation`` definitions, new
   top-level declarations, the whole family of axiom-backed kernel shortcuts and native evaluation
   (``Lean.ofReduce*``, ``reduceBool``/``reduceNat``, ``trustCompiler``, ``native_decide``,
   ``decide +native`` or any ``native`` option, ``bv_decide``: :mod:`~lit_alpha.verifiers.lean.trust`
   derives the rule from where Lean core defines them), ``set_option`` of any option outside
   :data:`ALLOWED_OPTION_PREFIXES`, attributes ``@[...]``, string literals, ``«»`` identifiers and
   backquoted names/quotations (which could hide code from this scanner or run meta-code). Comments
   are stripped first (nested ``/- -/`` as in Lean 4, ``--`` to end of line), so explanatory comments
   may say anything; an unterminated comment, a stray ``-/`` or a control character is rejected.
   Only the statement and the proof are sent to Lean (in the environment of the trusted header); text
   before the statement is never compiled and may only be header lines (``import``/``open``/
   ``set_option``), comments and blank lines (else ``cheat:preamble``).
2. **Lean's messages** (:func:`accept_messages`, :func:`accept_response`): at least as strict as
   DeepSeek-Prover-V1.5: no error, no ``sorry`` (the REPL's ``sorries`` field), no warning containing
   ``declaration uses 'sorry'`` or ``failed``.
3. **Axioms** (:func:`parse_axioms`, :func:`check_axioms`): after a clean check, ``#print axioms
   <name>`` in the proof's environment must list only :data:`ALLOWED_AXIOMS` (so ``native_decide``'s
   ``Lean.ofReduceBool``, ``sorryAx`` and any new axiom fail).

``strict=True`` (the LeanDojo backend, which has neither Lean's messages nor the axioms) also rejects
the search tactics that admit their goal with ``sorry`` (``apply?``, ``exact?``).

Every function is total on hostile text (returns a reason instead of raising) and linear in its input.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from lit_alpha.verifiers.lean.trust import search_reason, trust_reason

ALLOWED_AXIOMS = frozenset({"propext", "Classical.choice", "Quot.sound"})
FENCE_OPEN = "```lean4"
FENCE_CLOSE = "```"
DEFAULT_MAX_CHARS = 20_000

# set_option is allowed in a proof only for these (pretty-printing, linters, recursion depth);
# maxHeartbeats, kernel.*, debug.*, trace.*, synthInstance.* ... are rejected.
ALLOWED_OPTION_PREFIXES = ("pp.", "linter.", "maxRecDepth")

# Identifier-level tokens rejected anywhere in the proof (after comments are stripped).
BANNED_TOKENS = frozenset({
    # proofs that are not proofs
    "sorry", "admit", "sorryAx", "stop",
    # new axioms / constants / declarations (the proof is one theorem's body)
    "axiom", "axioms", "opaque", "theorem", "lemma", "def", "abbrev", "instance",
    "example", "structure", "class", "inductive", "coinductive", "mutual", "universe", "variable",
    "namespace", "section", "end", "noncomputable", "partial", "private", "protected", "export",
    "attribute", "deriving", "import", "prelude", "initialize", "builtin_initialize",
    # compiler escape hatches (the kernel-shortcut / native-evaluation family: lean.trust)
    "implemented_by", "extern", "csimp", "unsafe", "unsafeCast", "unsafeIO", "unsafeBaseIO", "unsafeEIO", "ptrAddrUnsafe",
    # meta-programming and running code
    "macro", "macro_rules", "elab", "elab_rules", "syntax", "declare_syntax_cat", "notation",
    "infix", "infixl", "infixr", "prefix", "postfix", "simproc", "dsimproc", "run_cmd", "run_tac",
    "run_elab", "run_meta", "by_elab", "IO", "EIO", "BaseIO", "System",
})
# ... and these also as a component of a dotted name (`h.sorry`, `Lean.ofReduceBool`); command
# keywords are not, since `Foo.def`/`x.end` are ordinary names.
BANNED_PIECES = frozenset({
    "sorry", "admit", "sorryAx", "implemented_by", "unsafeCast", "unsafeIO", "unsafeBaseIO", "unsafeEIO",
    "ptrAddrUnsafe", "IO", "EIO", "BaseIO", "run_cmd", "run_tac", "run_elab", "run_meta", "by_elab",
})
# Token prefixes rejected (a dotted name starting with one of these: IO.println, System.FilePath ...).
BANNED_PREFIXES = ("IO.", "EIO.", "BaseIO.", "System.", "Lean.Elab", "Lean.Meta", "Lean.Compiler",
                   "Lean.Environment", "Lean.Kernel", "unsafe")
# Characters rejected outside comments: string literals, guillemet identifiers, quotations.
BANNED_CHARS = {'"': "string_literal", "«": "guillemet", "»": "guillemet", "`": "quotation"}

_IDENT_EXTRA = "_'."  # '!' and '?' split tokens, so `native_decide!` still shows `native_decide`


def _is_ident_char(c: str) -> bool:
    return c.isalnum() or c in _IDENT_EXTRA or (ord(c) > 127 and c.isidentifier())


# -- extraction ---------------------------------------------------------------------------------
def extract_proof(completion: str, max_chars: int = DEFAULT_MAX_CHARS) -> str | None:
    """The code of the last complete ```` ```lean4 ```` block of ``completion``, or ``None``.

    A block opens with ```` ```lean4 ```` followed by a newline and closes at the next ```` ``` ````
    at the start of a line. ``None`` when there is no complete block, or when the block is longer
    than ``max_chars`` (the completion itself is scanned only within its last ``8 * max_chars``
    characters + the fence, so a huge completion costs no more than a bounded one).
    """
    if not isinstance(completion, str) or max_chars <= 0:
        return None
    text = completion[-(8 * max_chars + 64):]
    best: str | None = None
    pos = 0
    while True:
        start = text.find(FENCE_OPEN, pos)
        if start < 0:
            break
        nl = text.find("\n", start + len(FENCE_OPEN))
        if nl < 0:
            break
        if text[start + len(FENCE_OPEN):nl].strip():  # ```lean4foo: not a lean4 fence
            pos = start + len(FENCE_OPEN)
            continue
        body_start = nl + 1
        close = _find_close(text, body_start)
        if close < 0:
            break
        best = text[body_start:close]
        pos = close + len(FENCE_CLOSE)
    if best is None or len(best) > max_chars:
        return None
    return best


def _find_close(text: str, start: int) -> int:
    """Index of the first ```` ``` ```` at the start of a line at or after ``start``; -1 if none."""
    pos = start
    while True:
        i = text.find(FENCE_CLOSE, pos)
        if i < 0:
            return -1
        if i == start or text[i - 1] == "\n":
            return i
        pos = i + 1


# -- comments -----------------------------------------------------------------------------------
def strip_comments(code: str) -> tuple[str | None, str]:
    """``code`` with every comment replaced by spaces (newlines kept), or ``(None, reason)``.

    Lean 4 lexing of comments: ``--`` to end of line; ``/-`` ... ``-/`` nested. Because string
    literals, char literals with quotes and ``«»`` are rejected by :func:`check_source` anyway, the
    only way this scanner could disagree with Lean is removed. Offsets are preserved.
    """
    out: list[str] = []
    i, n = 0, len(code)
    depth = 0
    while i < n:
        c = code[i]
        two = code[i:i + 2]
        if depth:
            if two == "/-":
                depth += 1
                out.append("  ")
                i += 2
            elif two == "-/":
                depth -= 1
                out.append("  ")
                i += 2
            else:
                out.append("\n" if c == "\n" else " ")
                i += 1
        elif two == "/-":
            depth = 1
            out.append("  ")
            i += 2
        elif two == "-/":
            return None, "stray_comment_close"
        elif two == "--":
            j = code.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        else:
            out.append(c)
            i += 1
    if depth:
        return None, "unterminated_comment"
    return "".join(out), "ok"


def tokens(code: str) -> Iterable[tuple[int, str]]:
    """``(offset, token)`` for each maximal identifier-like run (letters, digits, ``_'.``)."""
    i, n = 0, len(code)
    while i < n:
        if _is_ident_char(code[i]):
            j = i + 1
            while j < n and _is_ident_char(code[j]):
                j += 1
            yield i, code[i:j]
            i = j
        else:
            i += 1


def _token_reason(tok: str) -> str | None:
    parts = tok.strip(".")
    if not parts:
        return None
    if parts in BANNED_TOKENS:
        return parts
    for piece in parts.split("."):
        if piece in BANNED_PIECES:
            return piece  # Foo.sorry, Lean.ofReduceBool, x.native_decide ...
    for pre in BANNED_PREFIXES:
        if parts.startswith(pre):
            return pre.rstrip(".")
    return None


# -- source rules -------------------------------------------------------------------------------
def check_source(code: str, theorem_statement: str, strict: bool = False) -> str | None:
    """``None`` if ``code`` passes the source rules for ``theorem_statement``, else a cheat reason.

    Reasons look like ``cheat:<what>`` (``cheat:statement`` when the given statement is missing,
    changed or repeated; ``cheat:sorry``, ``cheat:#exit``, ``cheat:set_option:maxHeartbeats`` ...).
    """
    if not isinstance(code, str) or not isinstance(theorem_statement, str):
        return "cheat:type"
    stmt = theorem_statement.strip()
    if not stmt:
        return "cheat:statement"
    for c in code:
        if (ord(c) < 32 and c not in "\n\t\r") or c == "\x7f":
            return "cheat:control_char"
    stripped, why = strip_comments(code)
    if stripped is None:
        return f"cheat:{why}"
    # the statement must appear exactly once, outside comments, at the start of a line
    at = code.find(stmt)
    if at < 0 or code.find(stmt, at + 1) >= 0:
        return "cheat:statement"
    if stripped[at:at + len(stmt)] != stmt:  # (part of) it lies inside a comment
        return "cheat:statement"
    if at > 0 and code[at - 1] != "\n":
        return "cheat:statement"
    why = preamble_reason(stripped[:at])
    if why:
        return why
    proof = stripped[at + len(stmt):]
    return proof_reason(proof, strict)


PREAMBLE_WORDS = ("import", "open", "set_option")


def preamble_reason(preamble: str) -> str | None:
    """Text before the statement is never compiled, so it may only be a header: ``import``/``open``/
    ``set_option`` lines, comments (the informal docstring) and blank lines; anything else (a helper
    lemma, an ``axiom``, a ``macro`` the proof would rely on) is ``cheat:preamble``."""
    for line in preamble.split("\n"):
        words = line.split(None, 1)
        if words and words[0] not in PREAMBLE_WORDS:
            return "cheat:preamble"
    return None


def proof_reason(proof: str, strict: bool = False) -> str | None:
    """The cheat reason in a comment-free proof body, or ``None`` (``strict``: see the module doc)."""
    for c, why in BANNED_CHARS.items():
        if c in proof:
            return f"cheat:{why}"
    if "@[" in proof:
        return "cheat:attribute"
    # '#' followed by a letter is a command (#exit, #eval, #print, #check ...); '#[' is an array
    i = proof.find("#")
    while i >= 0:
        nxt = proof[i + 1:i + 2]
        if nxt and (nxt.isalpha() or nxt == "_"):
            j = i + 1
            while j < len(proof) and _is_ident_char(proof[j]):
                j += 1
            return f"cheat:{proof[i:j][:32]}"
        i = proof.find("#", i + 1)
    toks = list(tokens(proof))
    for k, (_, tok) in enumerate(toks):
        why = _token_reason(tok)
        if why:
            return f"cheat:{why}"
        if tok == "set_option":
            opt = toks[k + 1][1] if k + 1 < len(toks) else ""
            if not opt.startswith(ALLOWED_OPTION_PREFIXES):
                return f"cheat:set_option:{opt[:48]}"
    why = trust_reason(proof, toks) or (search_reason(proof, toks) if strict else None)
    return f"cheat:{why}" if why else None


# -- Lean's answer ------------------------------------------------------------------------------
def accept_messages(messages: Any) -> tuple[bool, str]:
    """``(True, "ok")`` if Lean's messages accept the proof, else ``(False, reason)``.

    DeepSeek-Prover-V1.5's rule: no message of severity ``error``, no warning containing
    ``declaration uses 'sorry'`` or ``failed``. Malformed message lists are rejected (``garbage``).
    """
    if not isinstance(messages, list):
        return False, "garbage"
    for m in messages:
        if not isinstance(m, Mapping):
            return False, "garbage"
        sev = m.get("severity")
        data = m.get("data", "")
        if not isinstance(sev, str) or not isinstance(data, str):
            return False, "garbage"
        if sev == "error":
            return False, "error"
        if sev == "warning":
            if "declaration uses 'sorry'" in data:
                return False, "cheat:sorry"
            if "failed" in data:
                return False, "error:warning_failed"
        elif sev not in ("info", "information"):
            return False, "garbage"
    return True, "ok"


def accept_response(response: Any) -> tuple[bool, str]:
    """:func:`accept_messages` on a REPL response, plus: no ``sorries``, an ``env`` id present."""
    if not isinstance(response, Mapping):
        return False, "garbage"
    if "message" in response and "env" not in response:  # the REPL's own error: {"message": ...}
        return False, "error:repl"
    if response.get("sorries"):
        return False, "cheat:sorry"
    ok, why = accept_messages(response.get("messages", []))
    if not ok:
        return ok, why
    env = response.get("env")
    if not isinstance(env, int) or isinstance(env, bool):
        return False, "garbage"
    return True, "ok"


def axioms_command(theorem_name: str) -> str:
    """The command that lists the axioms ``theorem_name`` depends on."""
    return f"#print axioms {theorem_name}"


def parse_axioms(messages: Any, theorem_name: str | None = None) -> frozenset[str] | None:
    """The axioms named by Lean's answer to ``#print axioms``, or ``None`` if it is not such an answer.

    Accepted shapes (Lean 4 core): ``'<name>' depends on axioms: [a, b, c]`` (the list may wrap over
    lines) and ``'<name>' does not depend on any axioms``. Exactly one info message is expected; an
    error (unknown constant) or anything else is ``None``.
    """
    if not isinstance(messages, list) or len(messages) != 1 or not isinstance(messages[0], Mapping):
        return None
    m = messages[0]
    data = m.get("data")
    if m.get("severity") not in ("info", "information") or not isinstance(data, str) or len(data) > 100_000:
        return None
    data = data.strip()
    if theorem_name is not None:
        name = theorem_name.strip()
        if not (data.startswith(f"'{name}'") or data.startswith(f"'«{name}»'")):
            return None
    if data.endswith("does not depend on any axioms"):
        return frozenset()
    key = "depends on axioms: ["
    i = data.find(key)
    if i < 0 or not data.endswith("]"):
        return None
    body = data[i + len(key):-1]
    names = [" ".join(x.split()) for x in body.split(",")]
    if any(not x or " " in x for x in names):
        return None
    return frozenset(names)


def check_axioms(axioms: frozenset[str] | None) -> str | None:
    """``None`` if ``axioms`` are all allowed, else a reason (``cheat:axiom:<name>`` or ``error:axioms``)."""
    if axioms is None:
        return "error:axioms"
    bad = sorted(a for a in axioms if a not in ALLOWED_AXIOMS)
    if bad:
        return f"cheat:axiom:{bad[0][:64]}"
    return None


__all__ = [
    "ALLOWED_AXIOMS", "ALLOWED_OPTION_PREFIXES", "BANNED_TOKENS", "DEFAULT_MAX_CHARS",
    "accept_messages", "accept_response", "axioms_command", "check_axioms", "check_source",
    "extract_proof", "parse_axioms", "preamble_reason", "proof_reason", "strip_comments",
]


# -- the pure front half of every Lean backend (local REPL, kimina server, LeanDojo) -------------------


def valid_record(stmt: Any, name: Any) -> bool:
    """A checkable theorem record: ``theorem|lemma <name> …`` whose name is ``theorem_full_name``."""
    if not isinstance(stmt, str) or not isinstance(name, str) or not stmt.strip() or not name.strip():
        return False
    words = stmt.split(None, 2)
    return len(words) >= 2 and words[0] in ("theorem", "lemma") and words[1] == name.strip()


def proof_body(stmt: str, completion: Any, max_chars: int, strict: bool = False) -> tuple[str | None, str]:
    """The statement-plus-proof text to send to Lean, or ``None`` and the 0-verdict reason.

    The completion continues the prompt's open ```lean4 block, so the statement is prepended before
    the last complete block is extracted; then every source rule runs (exact statement, banned
    escape hatches). Reasons: ``parse``, ``empty``, ``too_long``-style parse failures, ``cheat:…``.
    """
    if not isinstance(completion, str):
        return None, "parse"
    if not completion.strip():
        return None, "empty"
    code = extract_proof(FENCE_OPEN + "\n" + stmt + completion, max_chars)
    if code is None:
        return None, "parse"
    cheat = check_source(code, stmt, strict)
    if cheat:
        return None, cheat
    return code[code.find(stmt.strip()):], "ok"


def record_job(record: Any, completion: Any, max_chars: int) -> tuple[tuple[str, str, str] | None, str]:
    """``((header, body, name), "ok")`` to send to Lean, or ``(None, reason)`` for a 0 verdict.

    The whole pure part of the REPL and server backends: the record's fields (``theorem_statement``,
    ``theorem_full_name``, ``src_context``), then :func:`proof_body`.
    """
    try:
        stmt, name, header = (record.get(k) for k in ("theorem_statement", "theorem_full_name", "src_context"))
    except AttributeError:
        return None, "error:record"
    if not isinstance(header, str) or not valid_record(stmt, name):
        return None, "error:record"
    body, reason = proof_body(stmt, completion, max_chars)
    return ((header, body, name.strip()), "ok") if body is not None else (None, reason)
