"""Interrupts always abort an export: a SIGINT is remembered, and the export checks for it before it commits.

Python only prints an exception raised inside a garbage-collection callback or a
`__del__` ("Exception ignored in ..."), so a `KeyboardInterrupt` that lands there (JAX
runs such callbacks) is lost and the export would go on and report success. While
`remembered_interrupts()` is active a SIGINT still raises `KeyboardInterrupt` where it
lands, and is also recorded; `check()` raises it again if it was swallowed.

>>> with remembered_interrupts() as check:  # doctest: +SKIP
...     convert()
...     check()   # raises KeyboardInterrupt if Ctrl-C was pressed during convert()
...     commit()
"""
import contextlib
import signal
import threading


@contextlib.contextmanager
def remembered_interrupts():
    """Record every SIGINT while active; yields `check()`, which raises `KeyboardInterrupt` if one came."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread receives signals
        yield lambda: None
        return
    received = []
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if previous is signal.SIG_IGN:
            return
        received.append(signum)
        if callable(previous):
            previous(signum, frame)
        raise KeyboardInterrupt

    def check():
        if received:
            raise KeyboardInterrupt("export interrupted (SIGINT)")

    signal.signal(signal.SIGINT, handler)
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, previous)
