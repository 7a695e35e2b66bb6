"""TCP servers that speak an instrument's text command set, for PyVISA ``SOCKET`` resources.

A :class:`VirtualInstrument` turns one command line into a reply (or none); an
:class:`InstrumentServer` serves it on a real TCP socket so that drivers talk to it exactly
as to the real instrument: ``pyvisa.ResourceManager("@py").open_resource(
"TCPIP::127.0.0.1::PORT::SOCKET", read_termination=..., write_termination=...)``.

Servers bind to 127.0.0.1 unless told otherwise, pick a free port by default (port 0), and
add a configurable latency per command, like a real instrument's processing time.
Unknown or malformed commands never crash a server: the instrument records an error in its
error queue, as the real one does, and the driver finds it with the error query.
A server's memory and time per byte are bounded whatever a client sends: the command history
keeps the last :attr:`VirtualInstrument.max_history_lines` lines, a line longer than
:attr:`VirtualInstrument.max_line_bytes` is refused with :attr:`VirtualInstrument.overlong_error`
and its bytes discarded, and each received byte is searched for the terminator once.

Terminators are per instrument: :attr:`VirtualInstrument.terminator` ends every reply and,
unless :attr:`VirtualInstrument.command_terminators` names others, every command (KXCI ends
commands in NUL and replies in what the 4200A's KCon utility is set to, see
:mod:`sim_backends.virtual.k4200a`).
"""

from __future__ import annotations

import math
import re
import socket
import socketserver
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

DEFAULT_HOST = "127.0.0.1"


@dataclass
class Fault:
    """A fault to inject into an instrument's replies (for tests of the host's recovery).

    ``drop`` swallows the reply, so the host's read times out; ``late`` sends it after
    ``late_s`` (the host times out, and the reply is still on the wire when it retries);
    ``garble`` replaces it with bytes no driver can parse; ``die`` makes the instrument drop
    every connection and answer nothing more, like a server process killed mid-conversation.
    """

    kind: str
    """``"drop"``, ``"late"``, ``"garble"`` or ``"die"``."""
    match: str = ""
    """Spoil only replies to commands starting with this text (case-insensitive)."""
    after: int = 0
    """Let this many matching replies through first."""
    times: int = 1
    """How many replies to spoil; -1 spoils every one from then on."""
    late_s: float = 0.0
    """``late``: how long after its command the reply is sent."""

    def __post_init__(self) -> None:
        if self.kind not in ("drop", "late", "garble", "die"):
            raise ValueError(
                f"fault kind must be 'drop', 'late', 'garble' or 'die', got {self.kind!r}"
            )


class CommandHistory:
    """The last ``maxlen`` command lines received, indexed from the first line ever received.

    ``len()`` counts every line received, so ``history[n_before:]`` is what arrived after a
    moment at which ``len(history) == n_before``, as with a list; asking for a line that has
    already been dropped raises :class:`IndexError` naming how many were dropped.
    """

    def __init__(self, maxlen: int):
        self._lines: deque[str] = deque(maxlen=maxlen)
        self._total = 0

    def append(self, line: str) -> None:
        self._lines.append(line)
        self._total += 1

    @property
    def dropped(self) -> int:
        """Lines received but no longer kept."""
        return self._total - len(self._lines)

    def __len__(self) -> int:
        return self._total

    def __iter__(self) -> Iterator[str]:
        return iter(self._lines)

    def _kept(self, index: int) -> int:
        if index < self.dropped:
            msg = f"line {index} of the history was dropped (only the last {len(self._lines)} kept)"
            raise IndexError(msg)
        return index - self.dropped

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._total)
            if stop <= start:
                return []
            return list(islice(self._lines, self._kept(start), self._kept(stop), step))
        if not -self._total <= index < self._total:
            raise IndexError(f"history index {index} out of range ({self._total} lines)")
        return self._lines[self._kept(index % self._total)]


class VirtualInstrument:
    """Base class: a command interpreter with a SCPI-style error queue.

    Subclasses implement :meth:`execute`; it returns the reply text for a query, ``None``
    for a command with no reply, and raises :class:`CommandError` for a bad command.
    """

    terminator = "\n"
    """What ends every reply (PyVISA's ``read_termination`` on the host)."""
    command_terminators: tuple[str, ...] = ()
    """Every string that ends a command line (the host's ``write_termination``);
    ``()``: :attr:`terminator` alone. A line is cut at the first of them."""
    latency_s = 0.0
    """Time the instrument takes per command (slept by the server before replying)."""
    max_errors = 30
    numeric_error: tuple[int, str] = (-104, "Data type error")
    """``(code, message)`` queued for a malformed number or a wrong argument count."""
    error_replies = False
    """Whether a refused command is answered with ``ERROR <code>: <text>`` (KXCI answers
    every command) or not at all (SCPI, FLEX: the error waits in the queue)."""
    max_history_lines = 100_000
    """Command lines kept in :attr:`received` (a fuzzing client must not fill the memory)."""
    max_line_bytes = 64 * 1024
    """Longest command line accepted; real instruments' input buffers are smaller still."""
    overlong_error: tuple[int, str] = (-223, "Too much data")
    """``(code, message)`` queued for a line longer than :attr:`max_line_bytes` (SCPI-99
    21.8.9: -223 "Too much data", a message that exceeds the device's buffer)."""

    def __init__(self) -> None:
        self.errors: deque[tuple[int, str]] = deque(maxlen=self.max_errors)
        self.lock = threading.Lock()
        self.received = CommandHistory(self.max_history_lines)
        """The command lines received, in order (tests compare them with what was sent)."""
        self.n_replies = 0
        """Replies sent: the host's round trips to this instrument."""
        self.busy_s = 0.0
        """Modelled instrument time spent so far: command latency, relay and chuck moves."""
        self.fault: Fault | None = None
        self.dead = False
        """A dead instrument closes every connection (see :class:`Fault` ``die``)."""

    def busy(self, seconds: float) -> None:
        """Spend ``seconds`` of modelled instrument time (sleeps, and counts it)."""
        if seconds > 0:
            time.sleep(seconds)
            self.busy_s += seconds

    def spoil(self, command: str, reply: str) -> str | None:
        """``reply`` as the injected :attr:`fault` leaves it (``None``: dropped)."""
        f = self.fault
        if f is None or not command.strip().lower().startswith(f.match.lower()):
            return reply
        if f.after > 0:
            f.after -= 1
            return reply
        if f.times == 0:
            return reply
        if f.times > 0:
            f.times -= 1
        if f.kind == "die":
            self.dead = True
        if f.kind == "late":
            time.sleep(f.late_s)  # in this connection's thread: the reply goes out late
            return reply
        return "\x7f#GARBLED%&" if f.kind == "garble" else None

    def handle(self, line: str) -> str | None:
        with self.lock:
            self.received.append(line)
            try:
                try:
                    return self.execute(line.strip())
                except CommandError:
                    raise
                except Exception as exc:  # never let a command kill the server thread
                    raise self.internal_error(exc) from None
            except CommandError as exc:
                self.record_error(exc.code, exc.message)
                return exc.reply

    def record_error(self, code: int, message: str) -> None:
        """Queue a refusal (called under :attr:`lock`); instruments that also keep a status
        register (SCPI ``*ESR?``, KXCI ``SP``) extend it."""
        self.errors.append((code, message))

    def refuse_overlong(self, n_bytes: int) -> str | None:
        """Queue :attr:`overlong_error` for a line of at least ``n_bytes``; the reply, if any."""
        exc = self.error(
            self.overlong_error, f"line of {n_bytes}+ bytes, at most {self.max_line_bytes}"
        )
        with self.lock:
            self.record_error(exc.code, exc.message)
        return exc.reply

    def error(self, error: tuple[int, str], detail: str = "") -> CommandError:
        """The refusal ``error = (code, message)``, with ``detail`` naming the culprit."""
        code, message = error
        text = f"{message.rstrip('.')}: {detail}" if detail else message
        return CommandError(
            code, text, reply=f"ERROR {code}: {text}" if self.error_replies else None
        )

    def floats(self, args: list[str], n_min: int, n_max: int) -> list[float]:
        """``n_min..n_max`` finite numbers, or :attr:`numeric_error`."""
        if not n_min <= len(args) <= n_max:
            detail = f"expected {n_min}..{n_max} arguments, got {len(args)}"
            raise self.error(self.numeric_error, detail)
        try:
            values = [float(a) for a in args]
        except ValueError:
            raise self.error(self.numeric_error, ", ".join(args)) from None
        if not all(math.isfinite(v) for v in values):
            raise self.error(self.numeric_error, ", ".join(args))
        return values

    def ints(self, args: list[str], n_min: int, n_max: int) -> list[int]:
        """``n_min..n_max`` integers (``2`` or ``2.0``), or :attr:`numeric_error`."""
        values = self.floats(args, n_min, n_max)
        if any(v != int(v) for v in values):
            raise self.error(self.numeric_error, ", ".join(args))
        return [int(v) for v in values]

    def internal_error(self, exc: Exception) -> CommandError:
        """What a command that failed inside the instrument leaves in the error queue
        (SCPI -300, device-specific error); instruments with their own codes override it."""
        return CommandError(-300, f"Device-specific error: {type(exc).__name__}: {exc}")

    def execute(self, command: str) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def pop_error(self) -> tuple[int, str]:
        return self.errors.popleft() if self.errors else (0, "No error")


class CommandError(Exception):
    """A command the instrument refuses; ``reply`` is what it answers, if anything."""

    def __init__(self, code: int, message: str, reply: str | None = None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.reply = code, message, reply


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        inst: VirtualInstrument = self.server.instrument  # type: ignore[attr-defined]
        # Replies go out at once: with Nagle's algorithm a reply after a burst of writes
        # waits for the host's delayed ACK (~40 ms on Linux).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ends = inst.command_terminators or (inst.terminator,)
        lines = _LineSplitter([end.encode() for end in ends], inst.max_line_bytes)
        while not inst.dead:
            try:
                data = self.request.recv(65536)
            except OSError:
                return
            if not data:
                return
            for raw in lines.feed(data):
                if not self.answer(inst, raw):
                    return

    def answer(self, inst: VirtualInstrument, raw: bytes | int) -> bool:
        """Execute one line (an ``int``: an overlong line's size); False ends the connection."""
        if isinstance(raw, int):
            reply = inst.refuse_overlong(raw)
            line = ""
        else:
            line = raw.decode("ascii", errors="replace").rstrip("\r")
            if not line.strip():
                return True
            reply = inst.handle(line)
            inst.busy(inst.latency_s)
            if reply is not None:
                reply = inst.spoil(line, reply)
        if inst.dead:
            return False
        if reply is not None:
            inst.n_replies += 1
            try:
                # Instruments answer in ASCII; a stray "±" in a message must not reach a
                # client that decodes ASCII (pymeasure, PyVISA's default encoding).
                data = (reply + inst.terminator).encode("ascii", errors="replace")
                self.request.sendall(data)
            except OSError:
                return False
        return True


class _LineSplitter:
    """Splits a byte stream into lines at any of ``terminators``, looking at each byte once
    and holding at most ``max_bytes``: a longer line is reported once as its size so far (an
    ``int``) and the rest of it, up to its terminator, discarded."""

    def __init__(self, terminators: list[bytes], max_bytes: int):
        # Longest first, so that "\r\n" wins over a "\n" it contains.
        ends = sorted(terminators, key=len, reverse=True)
        self.pattern = re.compile(b"|".join(re.escape(end) for end in ends))
        self.longest = len(ends[0])
        self.max_bytes = max_bytes
        self.buf = bytearray()
        self.discarding = False

    def feed(self, data: bytes) -> list[bytes | int]:
        out: list[bytes | int] = []
        start = 0
        # Only the new bytes (and a terminator split across two receives) are searched.
        scan = max(0, len(self.buf) - self.longest + 1)
        self.buf += data
        while (match := self.pattern.search(self.buf, scan)) is not None:
            end = match.start()
            if self.discarding:
                self.discarding = False
            elif end - start > self.max_bytes:
                out.append(end - start)
            else:
                out.append(bytes(self.buf[start:end]))
            start = scan = match.end()
        del self.buf[:start]
        if len(self.buf) > self.max_bytes:
            if not self.discarding:
                out.append(len(self.buf))
                self.discarding = True
            # Keep a possible first part of a terminator.
            del self.buf[: len(self.buf) - self.longest + 1]
        return out


class _TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    request_queue_size = 256
    """Listen backlog: 200 clients connecting at once all get through (the default is 5)."""
    daemon_threads = True


class InstrumentServer:
    """Serves ``instrument`` on ``host:port`` in a background thread; a context manager."""

    def __init__(self, instrument: VirtualInstrument, host: str = DEFAULT_HOST, port: int = 0):
        self.instrument = instrument
        self._server = _TCPServer((host, port), _Handler)
        self._server.instrument = instrument  # type: ignore[attr-defined]
        bound_host, bound_port = self._server.server_address[:2]  # AF_INET: (str, int)
        self.host, self.port = str(bound_host), int(bound_port)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"virtual-{type(instrument).__name__}",
        )

    @property
    def resource(self) -> str:
        """The VISA resource name to open with the ``@py`` backend."""
        return f"TCPIP::{self.host}::{self.port}::SOCKET"

    def start(self) -> InstrumentServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> InstrumentServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_listening(host: str, port: int, timeout_s: float = 5.0) -> None:
    """Block until something accepts connections on ``host:port`` (for subprocess servers)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                msg = f"nothing listens on {host}:{port} after {timeout_s} s"
                raise TimeoutError(msg) from None
            time.sleep(0.02)
