r"""Final answers of math word problems: is the model's final answer equivalent to the reference?

Extraction (``answer_format``)
------------------------------
* ``boxed`` (default): the last *complete* ``\boxed{...}`` (or ``\fbox{...}``), braces balanced;
* ``tag``: the last complete ``<answer>...</answer>`` block (the tag name is ``answer_tag``);
* ``gsm8k``: the text after the last ``####``, up to the end of its line;
* ``any``: the first of the three that is present (boxed, then tag, then gsm8k).

Normalisation (both the answer and the reference)
-------------------------------------------------
Surrounding ``$``/``\(\)``/``\[\]``, ``\left``/``\right``, LaTeX spacing (``\,`` ``\!`` ``\quad``
``~``), ``\displaystyle`` and a trailing period are dropped;
``\text{}``/``\mathrm{}``/``\textbf{}``/``\mbox{}`` are unwrapped; ``\dfrac``/``\tfrac`` are
``\frac``, ``\cdot``/``\times``/``×``/``·`` are ``*``, ``\div``/``÷`` is ``/`` and the Unicode minus
``−`` is ``-``. Currency signs (``$``, ``\$``), percent signs and degree marks are dropped, so
**``50\%`` equals ``50``, not ``0.5``** (the GSM8K/MATH convention: "what percent" answers are
written either way). A unit after a plain number and a space is dropped (``5 cm`` equals
``5``; only words of two letters or more, so ``2 x`` and ``2x`` are kept). ``1,000`` and ``1{,}000``
are one thousand (a whole answer of comma-separated three-digit groups is read as a number, not as a
tuple). ``x = 5`` is ``5`` (a single variable on the left). ``2\frac{1}{2}`` as a whole answer is
the mixed number 5/2.

Equivalence
-----------
A normalised answer is given an exact value when it is an arithmetic expression: decimal literals,
``+ - * /``, ``^`` with an integer exponent of at most 64 in absolute value, parentheses and braces,
``\frac{a}{b}`` (``\frac12`` too), ``\sqrt{x}`` of a rational ``x`` and implicit products such as
``2\sqrt{3}`` or ``3(4+1)``. Values live in the rationals extended by square roots (a sum of
``q·√n`` with ``q`` rational and ``n`` square-free, which is unique), so ``1/2``, ``0.5``, ``\frac{1}{2}``,
``2/4`` are one value, and ``\sqrt{12}`` equals ``2\sqrt{3}`` and ``\frac{\sqrt{2}}{2}`` equals
``1/\sqrt{2}``. Anything else (``\pi``, variables, intervals with symbols) is compared as normalised
text. A top-level comma list (``(1, 2)``, ``1, 2, 3``) is compared element by element, in order, with
the same brackets. Two answers are equivalent iff their canonical texts (see :func:`canonical_answer`)
are equal; the canonical text is the verdict's ``answer``.

Safety and time
---------------
Model text is never evaluated: a hand-written tokenizer and recursive-descent parser
(:mod:`lit_alpha.verifiers.math_expr`; no ``eval``, no sympy ``parse_expr``, whose parser calls
``eval``) read it. Work is bounded before it happens:
the completion's length (scanned with ``rfind``/``find`` only), the answer's length, the nesting
depth, literal length, exponent size, the bit size of every intermediate value and the radicand of
a square root (so ``9^9^9``, ``10^6`` characters or 10⁴ nested parentheses are rejected in
microseconds to a millisecond). math-verify was considered and not used: its parser evaluates with
sympy ``parse_expr`` and its timeout is ``signal.alarm`` (whole seconds, main thread only).

Reasons: ``ok``, ``wrong``, ``no_answer`` (nothing to extract), ``empty``, ``too_long``,
``bad_record`` (the record has no usable ``answer``).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any, Mapping

from lit_alpha.verifiers.base import Verdict, Verifier
from lit_alpha.verifiers.math_expr import Unsupported, render, value

MAX_BOXES = 64  # \boxed occurrences tried (from the end) before giving up
FORMATS = ("boxed", "tag", "gsm8k", "any")


# -- extraction -----------------------------------------------------------------------------------
def _braced(text: str, open_at: int, limit: int) -> str | None:
    """Content of the ``{...}`` whose ``{`` is at ``open_at``; None if unbalanced. Content longer
    than ``limit`` is cut to ``limit + 1`` characters (so the caller sees it is too long)."""
    depth = 0
    end = min(len(text), open_at + limit + 2)
    for i in range(open_at, end):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    if end < len(text):  # still open after limit + 1 characters: too long, not unbalanced
        return text[open_at + 1 : open_at + limit + 2]
    return None


def extract_boxed(text: str, limit: int) -> str | None:
    r"""The last complete ``\boxed{...}``/``\fbox{...}`` content (at most ``limit`` chars), or None."""
    candidates = 0
    end = len(text)
    while candidates < MAX_BOXES:
        b, f = text.rfind("\\boxed", 0, end), text.rfind("\\fbox", 0, end)
        start = max(b, f)
        if start == -1:
            return None
        candidates += 1
        i = start + (6 if start == b else 5)
        while i < len(text) and i < start + 16 and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            inner = _braced(text, i, limit)
            if inner is not None:
                return inner
        end = start
    return None


def extract_tag(text: str, tag: str) -> str | None:
    """The last complete ``<tag>...</tag>`` content, or None."""
    open_tag, close_tag = f"<{tag}>", f"</{tag}>"
    end = text.rfind(close_tag)
    if end == -1:
        return None
    start = text.rfind(open_tag, 0, end)
    return None if start == -1 else text[start + len(open_tag) : end]


def extract_gsm8k(text: str) -> str | None:
    """The rest of the line after the last ``####``, or None."""
    at = text.rfind("####")
    if at == -1:
        return None
    line_end = text.find("\n", at)
    return text[at + 4 : line_end if line_end != -1 else len(text)]


def extract(text: str, answer_format: str = "boxed", answer_tag: str = "answer", limit: int = 256) -> str | None:
    """The final answer in ``text`` under ``answer_format`` (module docstring), not yet normalised."""
    if answer_format in ("boxed", "any"):
        found = extract_boxed(text, limit)
        if found is not None or answer_format == "boxed":
            return found
    if answer_format in ("tag", "any"):
        found = extract_tag(text, answer_tag)
        if found is not None or answer_format == "tag":
            return found
    return extract_gsm8k(text)


# -- normalisation --------------------------------------------------------------------------------
_DROP = ("\\left", "\\right", "\\displaystyle", "\\!", "\\,", "\\;", "\\:", "\\quad", "\\qquad", "\\ ", "~",
         "^{\\circ}", "^\\circ", "°", "\\$", "$", "\\%", "%")
_REPLACE = (("\u2212", "-"), ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\cdot", "*"), ("\\times", "*"),
            ("×", "*"), ("·", "*"), ("\\div", "/"), ("÷", "/"), ("{,}", ","), ("\\{", "{"), ("\\}", "}"))
_WRAPPERS = ("\\text", "\\textbf", "\\mathrm", "\\mathbf", "\\mbox", "\\textrm")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_UNIT = re.compile(r"(-?[\d.,]+)\s+[A-Za-z]{2,}\.?(?:\s+[A-Za-z]{2,}\.?){0,3}")
_ASSIGN = re.compile(r"[A-Za-z](?:_\{?\w{1,8}\}?)?\s*=\s*([^=]+)")
_MIXED = re.compile(r"(-?)(\d{1,9})\\frac\{(\d{1,9})\}\{(\d{1,9})\}")
_FRAC_DIGITS = re.compile(r"\\frac(\d)(\d)")
_SQRT_DIGIT = re.compile(r"\\sqrt(\d)")


def _unwrap(s: str) -> str:
    r"""``\text{abc}`` -> ``abc`` for every wrapper command (bounded number of passes)."""
    for _ in range(16):
        positions = [(s.find(w + "{"), w) for w in _WRAPPERS]
        positions = [(p, w) for p, w in positions if p != -1]
        if not positions:
            return s
        p, w = min(positions)
        inner = _braced(s, p + len(w), len(s))
        if inner is None:
            return s
        s = s[:p] + inner + s[p + len(w) + len(inner) + 2 :]
    return s


def normalise(s: str) -> str:
    """The normalised text of an answer (rules in the module docstring)."""
    s = s.strip()
    for a, b in (("\\(", "\\)"), ("\\[", "\\]"), ("$", "$")):
        if len(s) >= 2 * len(a) and s.startswith(a) and s.endswith(b):
            s = s[len(a) : len(s) - len(b)].strip()
    s = _unwrap(s)
    for a, b in _REPLACE:
        s = s.replace(a, b)
    for d in _DROP:
        s = s.replace(d, "")
    s = " ".join(s.split()).rstrip(".").strip()
    m = _ASSIGN.fullmatch(s)
    if m and s.count("=") == 1:
        s = m.group(1).strip()
    m = _UNIT.fullmatch(s)
    if m:
        s = m.group(1).rstrip(".")
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    m = _MIXED.fullmatch(s)
    if m:
        s = f"{m.group(1)}({m.group(2)}+{m.group(3)}/{m.group(4)})"
    s = _FRAC_DIGITS.sub(r"\\frac{\1}{\2}", s)
    return _SQRT_DIGIT.sub(r"\\sqrt{\1}", s)


# -- canonical answers ----------------------------------------------------------------------------
_PAIRS = {"(": ")", "[": "]", "{": "}"}


def _split_top(s: str) -> list[str] | None:
    """Split at commas outside brackets; None when there is no such comma or brackets do not match."""
    parts, depth, last = [], 0, 0
    for i, c in enumerate(s):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                return None
        elif c == "," and depth == 0:
            parts.append(s[last:i])
            last = i + 1
    if not parts or depth != 0:
        return None
    return parts + [s[last:]]


def _canonical_atom(s: str) -> str:
    try:
        return render(value(s))
    except (Unsupported, ValueError, ZeroDivisionError):
        return "text:" + s.replace(" ", "")


def canonical_answer(raw: str) -> str:
    """Canonical text of one answer: equal for equivalent answers (module docstring)."""
    s = normalise(raw)
    if len(s) >= 2 and s[0] in _PAIRS and s[-1] in ")]}" and _split_top(s[1:-1]) is not None:
        inner = _split_top(s[1:-1]) or []
        return s[0] + ",".join(_canonical_atom(normalise(p)) for p in inner) + s[-1]
    parts = _split_top(s)
    if parts is not None:
        return ",".join(_canonical_atom(normalise(p)) for p in parts)
    return _canonical_atom(s)


def answer_text(x: str | int | float) -> str:
    """A reference answer as text; a float in plain decimal notation (``1e-07`` -> ``0.0000001``)."""
    if isinstance(x, float) and math.isfinite(x):
        text = format(Decimal(repr(x)), "f")
        return text[:-2] if text.endswith(".0") else text
    return str(x)


class MathAnswerVerifier(Verifier):
    r"""Bounded equivalence checker for final answers (rules in the module docstring).

    The record holds the reference answer under ``answer`` (a string or a number, already reduced
    to the final answer: :class:`~lit_alpha.tasks.math.MathTask` does that for GSM8K ``#### n``
    solutions and MATH ``\boxed{}`` ones).

    Args:
        answer_format: ``boxed`` (default), ``tag``, ``gsm8k`` or ``any``.
        answer_tag: tag name for ``tag``/``any`` (``<answer>...</answer>``).
        max_answer_chars: longest extracted answer accepted (longer: reason ``too_long``).
        max_completion_chars: longest completion looked at (longer: ``too_long``).
    """

    def __init__(self, answer_format: str = "boxed", answer_tag: str = "answer",
                 max_answer_chars: int = 256, max_completion_chars: int = 65536) -> None:
        if answer_format not in FORMATS:
            raise ValueError(f"answer_format must be one of {FORMATS}, got {answer_format!r}")
        if not answer_tag or any(c in answer_tag for c in "<>/"):
            raise ValueError(f"answer_tag must be a plain non-empty name, got {answer_tag!r}")
        if max_answer_chars < 1 or max_completion_chars < 1:
            raise ValueError("max_answer_chars and max_completion_chars must be >= 1")
        self.answer_format, self.answer_tag = answer_format, answer_tag
        self.max_answer_chars, self.max_completion_chars = max_answer_chars, max_completion_chars

    def reference(self, record: Mapping[str, Any]) -> str | None:
        """The record's reference answer as text, or None when it has none usable."""
        gold = record.get("answer") if isinstance(record, Mapping) else None
        if isinstance(gold, bool) or not isinstance(gold, (str, int, float)):
            return None
        gold = answer_text(gold).strip()
        return gold if 0 < len(gold) <= self.max_answer_chars else None

    def check(self, record: Mapping[str, Any], completion: str) -> Verdict:
        if not isinstance(completion, str):
            return Verdict(0.0, "no_answer")
        if len(completion) > self.max_completion_chars:
            return Verdict(0.0, "too_long")
        gold = self.reference(record)
        if gold is None:
            return Verdict(0.0, "bad_record")
        found = extract(completion, self.answer_format, self.answer_tag, self.max_answer_chars)
        if found is None:
            return Verdict(0.0, "no_answer")
        if len(found) > self.max_answer_chars:
            return Verdict(0.0, "too_long")
        if not found.strip():
            return Verdict(0.0, "empty")
        answer = canonical_answer(found)
        shown = answer[: 4 * self.max_answer_chars]  # values are bounded, but keep logs short
        if answer != canonical_answer(gold):
            return Verdict(0.0, "wrong", answer=shown)
        return Verdict(1.0, "ok", answer=shown)
