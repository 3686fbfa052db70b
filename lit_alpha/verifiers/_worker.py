"""A verification worker process (see :mod:`lit_alpha.verifiers.guarded`).

Protocol on stdin/stdout, pickled frames of :class:`multiprocessing.connection.Connection`: first the
verifier, then ``(index, record, completion)`` requests, each answered by ``(index, Verdict)``. The
verifier's own prints go to stderr, so they cannot corrupt the protocol. The worker exits when its
parent does (Linux: PR_SET_PDEATHSIG; elsewhere at the next request, on EOF).
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from multiprocessing.connection import Connection


def _die_with_parent(parent: int) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: rely on EOF
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


def main() -> None:
    _die_with_parent(int(sys.argv[1]))
    reply_fd = os.dup(1)
    os.dup2(2, 1)  # print() in a verifier goes to stderr, not into the protocol
    requests = Connection(0, writable=False)
    replies = Connection(reply_fd, readable=False)

    from lit_alpha.verifiers.base import Verdict
    from lit_alpha.verifiers.guarded import verify_one

    verifier = pickle.loads(requests.recv_bytes())
    while True:
        try:
            index, record, completion = pickle.loads(requests.recv_bytes())
        except (EOFError, OSError):
            return
        verdict = verify_one(verifier, record, completion)
        try:
            payload = pickle.dumps((index, verdict))
        except Exception:  # noqa: BLE001 - an unpicklable "verdict" is garbage
            payload = pickle.dumps((index, Verdict(0.0, "garbage")))
        replies.send_bytes(payload)


if __name__ == "__main__":
    main()
