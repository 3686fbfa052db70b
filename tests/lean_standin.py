#!/usr/bin/env python3
"""A stand-in for the leanprover-community Lean REPL, for tests without Lean.

It speaks the REPL's protocol (a JSON object + a blank line in; a pretty-printed JSON object + a
blank line out) and answers the way real Lean would for the cases the tests need:

* a command without ``env`` is a header: ``{"env": n}``;
* a command in an unknown env: ``{"message": "Unknown environment."}``;
* a proof: ``{"env": n}`` with no messages, except: ``sorry`` → a warning ``declaration uses 'sorry'``
  and a ``sorries`` entry (what Lean says for ``sorry``/``admit``/``stop``); ``apply?`` → its
  suggestions, then the goal admitted: a warning ``declaration uses 'sorry'`` (no ``sorries`` entry:
  the sorry is synthetic); ``exact?`` → it finds nothing here: an error, and the goal admitted;
* ``#print axioms NAME``: an info message listing the axioms the text of that env's chain would need
  (:func:`axioms_of`): propext, Classical.choice, Quot.sound, plus ``Lean.ofReduceBool`` for native
  evaluation (``native_decide``, ``bv_decide``, ``decide +native``, ``native := true``: Lean ≤ 4.28),
  ``Lean.ofReduceX`` for every ``ofReduceX`` named, ``Lean.trustCompiler`` if named, ``sorryAx`` for
  ``sorry``/``apply?``/``exact?``, and ``X`` for every ``axiom X``; "unknown constant" if no
  ``theorem NAME`` was declared.

:func:`proof_answer` and :func:`axioms_of` are pure, so other stand-ins (the kimina server of
``tests/test_kimina.py``) answer like this one.

Directives in the text sent (tests put them in Lean comments, which the rules let through) choose a
misbehaviour: ``standin:hang``, ``standin:crash``, ``standin:garbage``, ``standin:partial`` (half an
answer, then hang), ``standin:flood`` (an endless answer), ``standin:grow`` (allocate 2 GiB: dies under
an address-space limit), ``standin:error`` (a Lean error), ``standin:warn_failed`` (a warning with
"failed"), ``standin:fake_axioms`` (the axiom answer lists ``Lean.ofReduceBool``), ``standin:slow=S``,
``standin:bad_header`` (the header does not elaborate), ``standin:exit_after_answer``.

Command-line options: ``--log FILE`` appends each received command as one JSON line;
``--pids DIR`` writes this process's pid (and its helper child's, with ``--child``) into DIR;
``--child`` starts a child process in the same process group (like ``lake`` starting ``repl``);
``--startup-garbage`` prints a non-JSON banner first; ``--incremental-noise`` prints, before each
answer, the "Processing incremental state" debug text that some REPL versions write to stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

ALLOWED = ["propext", "Classical.choice", "Quot.sound"]


def main() -> None:
    args = sys.argv[1:]
    log = args[args.index("--log") + 1] if "--log" in args else None
    pids = args[args.index("--pids") + 1] if "--pids" in args else None
    child = None
    if "--child" in args:
        child = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(1)"])
    if pids:
        with open(os.path.join(pids, f"{os.getpid()}.pid"), "w") as f:
            f.write(f"{os.getpid()}\n{child.pid if child else ''}\n")
    out = sys.stdout
    if "--incremental-noise" in args:
        NOISE.extend(["plain", "fenced"])
    if "--startup-garbage" in args:
        out.write("Lean (version 4.x) REPL says hello\n\n")
        out.flush()
    envs: dict[int, tuple[int | None, str]] = {}
    buf = ""
    for line in sys.stdin:
        if line.strip():
            buf += line
            continue
        if not buf.strip():
            continue
        req, buf = json.loads(buf), ""
        if log:
            with open(log, "a") as f:
                f.write(json.dumps(req) + "\n")
        answer(req, envs, out)


def code_of(text: str) -> str:
    """``text`` without Lean comments (``--`` to end of line, nested ``/- -/``): what Lean elaborates."""
    out, depth, i = [], 0, 0
    while i < len(text):
        two = text[i:i + 2]
        if two == "/-":
            depth, i = depth + 1, i + 2
        elif two == "-/" and depth:
            depth, i = depth - 1, i + 2
        elif depth:
            i += 1
        elif two == "--":
            j = text.find("\n", i)
            i = len(text) if j < 0 else j
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


NATIVE = ("native_decide", "bv_decide", "bv_check", "+native", "native := true")


def axioms_of(text: str, raw: str = "") -> list[str]:
    """The axioms real Lean would list for the comment-free ``text`` (``raw``: with comments, where
    the ``standin:fake_axioms`` directive lives)."""
    axioms = list(ALLOWED)
    if any(w in text for w in NATIVE) or "standin:fake_axioms" in raw:
        axioms.append("Lean.ofReduceBool")
    for word in text.replace("(", " ").replace(")", " ").split():
        for piece in word.split("."):
            if piece.startswith("ofReduce") or piece == "trustCompiler":
                if f"Lean.{piece}" not in axioms:
                    axioms.append(f"Lean.{piece}")
    if "sorry" in text or "apply?" in text or "exact?" in text:
        axioms.append("sorryAx")
    for line in text.splitlines():
        if line.startswith("axiom "):
            axioms.append(line.split()[1])
    return axioms


def axioms_message(name: str, axioms: list[str]) -> dict:
    """Lean's info message answering ``#print axioms name``."""
    return {"severity": "info", "pos": {"line": 1, "column": 0},
            "data": f"'{name}' depends on axioms: [{', '.join(axioms)}]"}


def proof_answer(cmd: str) -> dict:
    """The REPL's answer to a proof command (``messages``, ``sorries``; no ``env``)."""
    messages, res = [], {}
    code = code_of(cmd)
    if "standin:error" in cmd:
        messages.append({"severity": "error", "pos": {"line": 2, "column": 2}, "data": "linarith failed"})
    if "standin:warn_failed" in cmd:
        messages.append({"severity": "warning", "data": "tactic 'simp' failed, nested error"})
    if "exact?" in code:  # library search found nothing: an error, and the goal admitted
        messages.append({"severity": "error", "pos": {"line": 2, "column": 2},
                         "data": "`exact?` could not close the goal. Try `apply?` to see partial suggestions."})
    if "apply?" in code:  # suggestions, then the goal closed with sorry
        messages.append({"severity": "info", "pos": {"line": 2, "column": 2}, "data": "Try this: refine Nat.le_refl ?_"})
    if "sorry" in code or "apply?" in code or "exact?" in code:
        messages.append({"severity": "warning", "data": "declaration uses 'sorry'"})
    if "sorry" in code:
        res["sorries"] = [{"pos": {"line": 2, "column": 2}, "goal": "⊢ False"}]
    if messages:
        res["messages"] = messages
    return res


def chain_text(envs, env) -> str:
    parts = []
    while env is not None:
        parent, text = envs[env]
        parts.append(text)
        env = parent
    return "\n".join(reversed(parts))


NOISE = []  # --incremental-noise: the debug output some REPL versions print before each answer


def reply(out, obj) -> None:
    for style in NOISE:
        text = LAST_CMD[0]
        if style == "fenced":
            out.write(f"Processing incremental state [pos: 0..{len(text)}]:\n```lean4\n{text}\n```\n")
        else:
            out.write(f"Processing incremental state [pos: 0..{len(text)}]:\n{text}\n")
    out.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n\n")  # multi-line, like the real REPL
    out.flush()


LAST_CMD = [""]


def answer(req, envs, out) -> None:
    cmd = req.get("cmd", "")
    LAST_CMD[0] = cmd
    parent = req.get("env")
    if parent is not None and parent not in envs:
        return reply(out, {"message": "Unknown environment."})
    raw = cmd if parent is None else chain_text(envs, parent) + "\n" + cmd
    text = code_of(raw)  # what Lean elaborates (directives live in comments, checked in `raw`/`cmd`)
    if "standin:hang" in cmd:
        time.sleep(10**6)
    if "standin:crash" in cmd:
        os._exit(3)
    if "standin:garbage" in cmd:
        out.write("PANIC at Lean.Elab.Command unreachable code\n\n")
        return out.flush()
    if "standin:partial" in cmd:
        out.write('{"env": 1, "messa')
        out.flush()
        time.sleep(10**6)
    if "standin:flood" in cmd:
        while True:
            out.write("x" * 65536)
    if "standin:grow" in cmd:
        hog = bytearray(2 * 1024**3)  # MemoryError under RLIMIT_AS: the process dies with a traceback
        hog[0] = 1
    if "standin:slow=" in cmd:
        time.sleep(float(cmd.split("standin:slow=")[1].split()[0]))
    env = len(envs)
    envs[env] = (parent, cmd)
    if parent is None:  # header
        if "standin:bad_header" in cmd:
            return reply(out, {"messages": [{"severity": "error", "pos": {"line": 1, "column": 0},
                                             "data": "unknown package 'MiniF2F'"}], "env": env})
        return reply(out, {"env": env})
    if cmd.startswith("#print axioms "):
        name = cmd[len("#print axioms "):].strip()
        if f"theorem {name} " not in text and f"theorem {name}\n" not in text:
            return reply(out, {"messages": [{"severity": "error", "data": f"unknown constant '{name}'"}],
                               "env": env})
        return reply(out, {"messages": [axioms_message(name, axioms_of(text, raw))], "env": env})
    reply(out, dict(proof_answer(cmd), env=env))
    if "standin:exit_after_answer" in cmd:
        os._exit(0)


if __name__ == "__main__":
    main()
