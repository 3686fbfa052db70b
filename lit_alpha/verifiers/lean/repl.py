"""One Lean REPL process (leanprover-community/repl) and its JSON protocol.

The REPL reads a JSON object followed by a blank line on stdin and answers with a (pretty-printed,
possibly multi-line) JSON object followed by a blank line on stdout:

* ``{"cmd": "import Mathlib\\nopen Real"}`` → ``{"env": 0}`` (plus ``messages`` if any);
* ``{"cmd": "theorem t ... := by ...", "env": 0}`` → ``{"env": 1, "messages": [...], "sorries": [...]}``;
* a request the REPL itself rejects → ``{"message": "Unknown environment."}``.

:class:`LeanREPL` starts the process in its own session (process group) with an address-space limit
(``RLIMIT_AS``) and, on Linux, a parent-death signal (set by a tiny launcher that then execs the REPL); imports each distinct header once and caches the
``env`` it returns; reads answers with a deadline (``select`` on the pipe, never a blocking read) and a
size bound. Whatever goes wrong (deadline, exit, output that is not one JSON object) raises
:class:`REPLError` with a kind (``timeout``, ``crash``, ``garbage``); the caller kills the process
(the whole group) and starts a new one.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, Sequence

MAX_RESPONSE_BYTES = 8 * 1024 * 1024  # an answer longer than this is garbage
_LIVE: "set[LeanREPL]" = set()  # every started REPL of this process, killed at exit


NOISE_PREFIX = "Processing incremental state"


def _parse_answer(text: str) -> dict[str, Any]:
    try:
        out = json.loads(text)
    except (ValueError, RecursionError):
        raise REPLError("garbage", text[:200]) from None
    if not isinstance(out, dict):
        raise REPLError("garbage", text[:200])
    return out


class REPLError(RuntimeError):
    """The REPL failed: ``kind`` is ``timeout``, ``crash`` or ``garbage``."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind, self.detail = kind, detail


# Started as ``python -S -c LAUNCH <parent pid> <memory MiB> <argv...>``: a fresh single-threaded
# interpreter sets the limits and execs the REPL. (A ``preexec_fn`` would run Python between fork and
# exec in a child of a multi-threaded parent, which can deadlock; ``start_new_session`` is done in C.)
LAUNCH = """
import os, sys, resource
parent, mb, argv = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
if mb > 0:
    resource.setrlimit(resource.RLIMIT_AS, (mb * 1048576, mb * 1048576))
try:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG = SIGKILL (kept across exec)
except Exception:
    pass
if os.getppid() != parent:
    os._exit(1)
os.execvp(argv[0], argv)
"""


def split_cmd(cmd: str | Sequence[str]) -> list[str]:
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


class LeanREPL:
    """One REPL process.

    Args:
        cmd: the command line (``lake exe repl``, or a path to a REPL-compatible executable).
        cwd: the Lean project directory it runs in.
        memory_mb: address-space limit of the process (and its children), 0 for none.
        env: extra environment variables.
    """

    def __init__(self, cmd: str | Sequence[str], cwd: str | None = None, memory_mb: int = 0,
                 env: dict[str, str] | None = None) -> None:
        self.argv = split_cmd(cmd)
        if not self.argv:
            raise OSError("empty REPL command")
        exe = self.argv[0] if os.sep in self.argv[0] else shutil.which(self.argv[0])
        if not exe or not os.access(os.path.join(cwd or ".", exe), os.X_OK):
            raise FileNotFoundError(f"REPL command not found: {self.argv[0]!r}")
        launch = [sys.executable, "-S", "-c", LAUNCH, str(os.getpid()), str(int(memory_mb)), *self.argv]
        self.proc = subprocess.Popen(
            launch, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True, env=dict(os.environ, **(env or {})),
        )
        self.pgid = self.proc.pid  # start_new_session: the child leads its own process group
        assert self.proc.stdin is not None
        os.set_blocking(self.proc.stdin.fileno(), False)
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf already searched for the blank-line terminator
        self.headers: dict[str, int] = {}  # header text -> env id
        self.proofs = 0  # proofs checked by this process (the REPL keeps every env: recycle it)
        _LIVE.add(self)

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """Kill the whole process group (lake and the repl under it) and reap the leader."""
        _LIVE.discard(self)
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
            pass

    close = kill

    # -- protocol ----------------------------------------------------------------------------
    def request(self, payload: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send one command and return the answer; raise :class:`REPLError` on any failure."""
        if not self.alive:
            raise REPLError("crash", f"exit code {self.proc.returncode}")
        data = (json.dumps(payload, ensure_ascii=False) + "\n\n").encode()
        deadline = time.monotonic() + timeout_s
        self._write(data, deadline)
        return self._read(deadline)

    def _write(self, data: bytes, deadline: float) -> None:
        """Write with the same deadline (a REPL that stops reading cannot block us on a full pipe)."""
        assert self.proc.stdin is not None
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise REPLError("timeout", "write")
            _, ready, _ = select.select([], [fd], [], left)
            if not ready:
                raise REPLError("timeout", "write")
            try:
                n = os.write(fd, view[:65536])  # the fd is non-blocking: writes what fits
            except BlockingIOError:
                continue
            except (BrokenPipeError, OSError) as exc:
                raise REPLError("crash", f"write: {type(exc).__name__}") from None
            view = view[n:]

    def _read(self, deadline: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        noise = 0  # bytes of known REPL debug output skipped in this answer
        while True:
            text = self._take_message()
            if text is not None:
                body = text.lstrip()
                if not body:
                    continue  # extra blank lines between answers
                if body.startswith("{") and not noise:
                    return _parse_answer(body)
                # Some REPL versions print "Processing incremental state [pos: a..b]:" and the
                # command's text before the answer. Skip it; the answer is the last line starting
                # with "{" (Lean pretty-prints JSON with nested lines indented; a proof's text cannot
                # hold a JSON object: the source rules reject string literals).
                if body.startswith(NOISE_PREFIX) or noise:
                    noise += len(text)
                    if noise > MAX_RESPONSE_BYTES:
                        raise REPLError("garbage", "answer too long")
                    at = body.rfind("\n{")
                    candidate = body if body.startswith("{") else body[at + 1:] if at >= 0 else ""
                    if candidate:
                        try:
                            return _parse_answer(candidate)
                        except REPLError:
                            pass
                    continue
                raise REPLError("garbage", text[:200])
            left = deadline - time.monotonic()
            if left <= 0:
                raise REPLError("timeout")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise REPLError("timeout")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                self.proc.poll()
                raise REPLError("crash", f"EOF (exit code {self.proc.returncode})")
            self._buf += chunk
            if len(self._buf) > MAX_RESPONSE_BYTES:
                raise REPLError("garbage", "answer too long")

    def _take_message(self) -> str | None:
        """The next blank-line-terminated message in the buffer, or None if incomplete.

        Only the bytes not searched before are searched (hostile output costs linear time).
        """
        i = self._buf.find(b"\n\n", max(0, self._scanned - 1))
        if i < 0:
            self._scanned = len(self._buf)
            return None
        msg = bytes(self._buf[:i])
        del self._buf[:i + 2]
        self._scanned = 0
        try:
            return msg.decode("utf-8")
        except UnicodeDecodeError:
            raise REPLError("garbage", "not UTF-8") from None

    # -- Lean-level helpers ------------------------------------------------------------------
    def header_env(self, header: str, timeout_s: float) -> int:
        """The env id of ``header`` (imported once per process, then cached)."""
        if header in self.headers:
            return self.headers[header]
        out = self.request({"cmd": header}, timeout_s)
        env = out.get("env")
        errors = [m for m in out.get("messages", []) or [] if isinstance(m, dict) and m.get("severity") == "error"]
        if not isinstance(env, int) or isinstance(env, bool) or errors:
            detail = "; ".join(str(m.get("data", ""))[:300] for m in errors) or str(out)[:300]
            raise HeaderError(detail)
        self.headers[header] = env
        return env


class HeaderError(RuntimeError):
    """The header (imports/options/opens) does not elaborate in this Lean project: a setup error."""


def _kill_live() -> None:
    for repl in list(_LIVE):
        repl.kill()


import atexit  # noqa: E402 - registered once, after the class exists

atexit.register(_kill_live)
