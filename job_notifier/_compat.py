"""Differences between Python 2.7 and Python 3, kept in one place.

Every other module imports from here instead of testing the interpreter
version itself.
"""

from __future__ import absolute_import, unicode_literals

import errno
import fcntl
import heapq
import os
import select
import threading
import time

import six

PY2 = six.PY2
text_type = six.text_type
binary_type = six.binary_type
string_types = six.string_types
integer_types = six.integer_types

try:
    monotonic = time.monotonic
except AttributeError:  # Python 2.7
    # Python 2.7 has no monotonic clock in the standard library; read
    # CLOCK_MONOTONIC through ctypes so that wall clock jumps cannot stretch
    # or cut a timeout.
    import ctypes
    import ctypes.util

    class _Timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    _librt = ctypes.CDLL(ctypes.util.find_library("rt") or "libc.so.6",
                         use_errno=True)
    _clock_gettime = _librt.clock_gettime
    _clock_gettime.argtypes = [ctypes.c_int, ctypes.POINTER(_Timespec)]
    _CLOCK_MONOTONIC = 1

    def monotonic():
        spec = _Timespec()
        if _clock_gettime(_CLOCK_MONOTONIC, ctypes.byref(spec)) != 0:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number))
        return spec.tv_sec + spec.tv_nsec * 1e-9

try:
    BuiltinTimeoutError = TimeoutError
except NameError:  # Python 2.7
    class BuiltinTimeoutError(Exception):
        """Stand-in for Python 3's built-in ``TimeoutError``."""


def ensure_text(value, encoding="utf-8"):
    """Return ``value`` as text: bytes are decoded, numbers are formatted."""
    if isinstance(value, text_type):
        return value
    if isinstance(value, binary_type):
        return value.decode(encoding)
    return text_type(value)


def quote(value):
    """Return ``repr(value)`` without Python 2.7's ``u`` prefix on text.

    Error messages show values this way, so they read the same on both
    Python lines: ``'amqp'``, not ``u'amqp'``.
    """
    text = repr(value)
    if PY2 and isinstance(value, text_type) and text.startswith("u"):
        return text[1:]
    return text


def write_line(stream, line):
    """Write ``line`` and a newline to a standard stream, then flush it.

    Python 2.7's ``file.write()`` encodes text as ASCII, so there the line
    is encoded with the stream's encoding, or UTF-8 for a pipe.
    """
    if PY2:
        encoding = getattr(stream, "encoding", None) or "utf-8"
        stream.write((line + "\n").encode(encoding, "replace"))
    else:
        stream.write(line + "\n")
    stream.flush()


def nonblocking_pipe():
    """Return a pipe whose ends never block, for waking a ``select()``.

    A writer that finds the pipe full can skip its byte: the reader is
    already due to wake up.
    """
    read_fd, write_fd = os.pipe()
    for fd in (read_fd, write_fd):
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        flags = fcntl.fcntl(fd, fcntl.F_GETFD)
        fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
    return read_fd, write_fd


class Wakeup(object):
    """One-shot signal that one thread waits on and another sets.

    A fresh ``threading.Lock`` is acquired at construction. ``set()``
    releases it and ``wait()`` acquires it again. On Python 3,
    ``Lock.acquire(timeout=...)`` blocks in the kernel. Python 2.7's timed
    waits on ``threading`` primitives poll with sleeps of up to 50 ms, which
    would add that much latency to every wake-up. So on Python 2.7 the
    waiter blocks without a timeout, and a shared timer thread releases the
    lock when the deadline passes.
    """

    __slots__ = ("_lock", "_guard", "_state")

    _PENDING, _SET, _EXPIRED = 0, 1, 2

    def __init__(self):
        self._lock = threading.Lock()
        self._lock.acquire()
        self._guard = threading.Lock()
        self._state = self._PENDING

    def is_set(self):
        return self._state == self._SET

    def is_pending(self):
        return self._state == self._PENDING

    def set(self):
        """Wake the waiter; return False if the wait had already expired."""
        with self._guard:
            if self._state != self._PENDING:
                return self._state == self._SET
            self._state = self._SET
        self._lock.release()
        return True

    def _expire(self):
        with self._guard:
            if self._state != self._PENDING:
                return
            self._state = self._EXPIRED
        self._lock.release()

    def _rearm(self):
        # Used on Python 2.7 only, when a wait slice ended so the main
        # thread could handle a signal but the real deadline is later.
        with self._guard:
            if self._state == self._EXPIRED:
                self._state = self._PENDING
                return True
            return False

    def wait(self, timeout=None):
        """Block until ``set()`` or until ``timeout`` seconds pass.

        Return True if the signal was set, False if the timeout passed.
        """
        if timeout is not None and timeout <= 0:
            with self._guard:
                if self._state == self._PENDING:
                    self._state = self._EXPIRED
                    return False
            return self._state == self._SET
        if not PY2:
            if timeout is not None and timeout >= threading.TIMEOUT_MAX:
                # Lock.acquire() raises OverflowError past TIMEOUT_MAX
                # (about 292 years on Linux), so such a wait has no limit.
                timeout = None
            if timeout is None:
                acquired = self._lock.acquire()
            else:
                acquired = self._lock.acquire(True, timeout)
            if not acquired:
                self._expire()
                # set() may have won the race after the timed acquire gave up.
                if self._state == self._SET:
                    self._lock.acquire()
                    return True
                return False
            return self._state == self._SET
        return _wait_python2(self, timeout)


# Python 2.7 ignores signals while the main thread blocks in
# Lock.acquire(), so a wait with no timeout in the main thread could not
# be interrupted with Ctrl-C; waits there are cut into slices of this size.
_MAIN_THREAD_SLICE = 0.5


def _wait_python2(wakeup, timeout):
    deadline = None if timeout is None else monotonic() + timeout
    in_main_thread = isinstance(threading.current_thread(),
                                threading._MainThread)
    while True:
        slice_deadline = deadline
        if in_main_thread:
            slice_end = monotonic() + _MAIN_THREAD_SLICE
            if slice_deadline is None or slice_end < slice_deadline:
                slice_deadline = slice_end
        if slice_deadline is not None:
            _timer().schedule(slice_deadline, wakeup)
        wakeup._lock.acquire()
        if wakeup._state == wakeup._SET:
            return True
        if deadline is not None and monotonic() >= deadline:
            return False
        if not wakeup._rearm():
            return wakeup._state == wakeup._SET


class _DeadlineTimer(object):
    """Thread that expires ``Wakeup`` objects at their deadlines (Python 2.7).

    It sleeps in ``select()`` on a pipe, because that timeout is exact on
    Python 2.7 and ``Condition.wait(timeout)`` is not. A new earlier
    deadline writes a byte to the pipe to wake it.
    """

    def __init__(self):
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._heap = []
        self._counter = 0
        self._read_fd, self._write_fd = nonblocking_pipe()
        thread = threading.Thread(target=self._run,
                                  name="job-notifier-deadlines")
        thread.daemon = True
        thread.start()

    def schedule(self, deadline, wakeup):
        with self._lock:
            self._counter += 1
            heapq.heappush(self._heap, (deadline, self._counter, wakeup))
            is_earliest = self._heap[0][2] is wakeup
        if is_earliest:
            try:
                os.write(self._write_fd, b"x")
            except OSError:
                pass

    def _run(self):
        while True:
            now = monotonic()
            expired = []
            with self._lock:
                while self._heap and self._heap[0][0] <= now:
                    expired.append(heapq.heappop(self._heap)[2])
                delay = self._heap[0][0] - now if self._heap else None
            for wakeup in expired:
                wakeup._expire()
            if expired:
                continue
            try:
                readable, _, _ = select.select([self._read_fd], [], [], delay)
            except (OSError, select.error) as exc:
                if exc.args and exc.args[0] == errno.EINTR:
                    continue
                raise
            if readable:
                try:
                    os.read(self._read_fd, 4096)
                except OSError as exc:
                    if exc.errno != errno.EAGAIN:
                        raise


_timer_instance = None
_timer_lock = threading.Lock()


def _timer():
    global _timer_instance, _timer_lock
    timer = _timer_instance
    if timer is not None and timer._pid == os.getpid():
        return timer
    if timer is not None:
        # Forked child: the parent's timer thread does not exist here and the
        # module lock may have been copied while held.
        _timer_lock = threading.Lock()
    with _timer_lock:
        if _timer_instance is None or _timer_instance._pid != os.getpid():
            _timer_instance = _DeadlineTimer()
        return _timer_instance


def sleep_until(stop_event_fd, seconds):
    """Sleep for ``seconds`` or until ``stop_event_fd`` becomes readable."""
    try:
        readable, _, _ = select.select([stop_event_fd], [], [], seconds)
    except (OSError, select.error) as exc:
        if exc.args and exc.args[0] == errno.EINTR:
            return False
        raise
    return bool(readable)



def drain_pipe(read_fd):
    """Read and discard everything in a non-blocking pipe."""
    while True:
        try:
            if not os.read(read_fd, 65536):
                return
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBADF):
                return
            raise
