"""What an engine's exit means, in words a user can act on.

A process that dies by a signal tells us little by its return code (-4, -9 …); the same few signals
cover nearly every engine crash, and each has a usual cause and a usual fix.
"""

from __future__ import annotations

import signal

__all__ = ["describe_exit", "died_by_signal"]

_SIGNALS: dict[signal.Signals, str] = {
    signal.SIGILL: (
        "the engine binary uses CPU instructions this machine cannot execute; "
        "rebuild it for this CPU with `sovra engines install --rebuild`"
    ),
    signal.SIGKILL: (
        "killed, often by the kernel's out-of-memory killer (see `dmesg`); "
        "give the engine more memory, or declare a smaller model or context window"
    ),
    signal.SIGSEGV: (
        "segmentation fault: a bug in the engine or a damaged model file; "
        "try `sovra engines install --rebuild`, or remove the weights from the store and `sovra preload`"
    ),
    signal.SIGBUS: "bus error: the model file was truncated or changed while mapped, or /dev/shm is full",
    signal.SIGABRT: "aborted: the engine failed an internal check (its last output lines say which)",
    signal.SIGFPE: "arithmetic fault in the engine: a bug, or a CPU the binary was not built for",
    signal.SIGTERM: "terminated by a signal from outside Sovra",
    signal.SIGINT: "interrupted by a signal from outside Sovra",
    signal.SIGHUP: "hung up by a signal from outside Sovra",
}


def died_by_signal(returncode: int | None) -> signal.Signals | None:
    """The signal that ended a process (subprocess reports it as a negative return code)."""
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode)
    except ValueError:
        return None


def describe_exit(returncode: int | None) -> str:
    """One line: how the process ended and, for a signal, what usually causes it and what to do."""
    if returncode is None:
        return "still running"
    caught = died_by_signal(returncode)
    if caught is not None:
        return f"{caught.name}: {_SIGNALS.get(caught, 'killed by a signal')}"
    if returncode < 0:
        return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"
