"""Garbage over TCP: the virtual servers stay bounded in memory and CPU time and keep serving.

Inputs tried (for ``docs/reliability.md``): ``N_INPUTS`` — 64 random-byte bursts, one burst of
NULs, 32 MiB without a terminator, an overlong line on each of two instruments (SCPI queue and
KXCI reply), a line split across receives, commands ending in either of two terminators
(also split across receives), 150 000 lines against the history bound, and 200 clients
connecting at once.
"""

from __future__ import annotations

import random
import socket
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import pytest

from sim_backends.virtual.b2200a import VirtualB2200A
from sim_backends.virtual.k4200a import VirtualK4200A
from sim_backends.virtual.server import CommandHistory, InstrumentServer, VirtualInstrument

N_RANDOM_BURSTS = 64
N_INPUTS = N_RANDOM_BURSTS + 8


def connect(server: InstrumentServer) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def query(server: InstrumentServer, command: str, term: bytes = b"\n") -> str:
    """One command on a fresh connection, its reply (up to the terminator)."""
    with connect(server) as sock:
        sock.sendall(command.encode() + term)
        reply = b""
        while not reply.endswith(term):
            data = sock.recv(4096)
            assert data, "the server closed the connection without answering"
            reply += data
    return reply[: -len(term)].decode()


def test_random_bytes_and_nuls_leave_a_working_server():
    inst = VirtualB2200A()
    rng = random.Random(0)
    with InstrumentServer(inst) as server:
        for _ in range(N_RANDOM_BURSTS):
            with connect(server) as sock:
                sock.sendall(rng.randbytes(rng.randrange(1, 20_000)))
        with connect(server) as sock:
            sock.sendall(b"\0" * 100_000 + b"\n")
        assert query(server, "*IDN?") == inst.idn
    assert len(inst.errors) <= inst.max_errors


def test_32_mib_without_terminator_is_bounded_in_cpu_and_memory():
    inst = VirtualB2200A()
    chunk = b"A" * (1 << 20)
    with InstrumentServer(inst) as server:
        tracemalloc.start()
        cpu0 = time.process_time()
        try:
            with connect(server) as sock:
                for _ in range(32):
                    sock.sendall(chunk)
                sock.sendall(b"\n*IDN?\n")
                reply = b""
                while not reply.endswith(b"\n"):
                    data = sock.recv(4096)
                    assert data
                    reply += data
            cpu_s = time.process_time() - cpu0
            _, peak_bytes = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert reply.decode().strip() == inst.idn
        assert query(server, "SYST:ERR?").startswith("-223,")
    # Before: 22 s of CPU rescanning a growing buffer, and the whole 32 MiB held.
    assert cpu_s < 5.0
    assert peak_bytes < 8 * inst.max_line_bytes + 2 * len(chunk)
    assert list(inst.received) == ["*IDN?", "SYST:ERR?"]  # the long line is not kept


def test_overlong_line_queues_the_scpi_error_and_the_next_line_runs():
    inst = VirtualB2200A()
    long_line = b":ROUT:CLOS (@" + b"1" * (inst.max_line_bytes + 10) + b")\n"
    with InstrumentServer(inst) as server, connect(server) as sock:
        sock.sendall(long_line + b":ROUT:CLOS (@10102)\n*OPC?\n")
        assert sock.recv(16) == b"1\n"
        assert inst.closed == {10102}
        code, message = inst.pop_error()
        assert code == -223
        assert str(inst.max_line_bytes) in message
        assert inst.pop_error() == (0, "No error")


def test_overlong_line_is_answered_with_the_kxci_error_reply():
    inst = VirtualK4200A()
    with InstrumentServer(inst) as server:
        reply = query(server, "X" * (inst.max_line_bytes + 1), term=b"\0")
    assert reply.startswith("ERROR -223:")


def test_line_split_across_receives_and_terminator_split_in_two():
    inst = VirtualB2200A()
    inst.terminator = "\r\n"
    with InstrumentServer(inst) as server, connect(server) as sock:
        for piece in (b"*ID", b"N?\r", b"\n"):
            sock.sendall(piece)
        reply = b""
        while not reply.endswith(b"\r\n"):
            reply += sock.recv(4096)
    assert reply == inst.idn.encode() + b"\r\n"
    assert list(inst.received) == ["*IDN?"]


def test_either_command_terminator_ends_a_line_also_split_across_receives():
    """KXCI with KCon's terminator on LF: commands end in NUL or LF, replies in LF."""
    inst = VirtualK4200A(reply_terminator="\n")
    with InstrumentServer(inst) as server, connect(server) as sock:
        for piece in (b"*OPT", b"?\0I", b"D\n", b"SP\0"):
            sock.sendall(piece)
        reply = b""
        while reply.count(b"\n") < 3:
            data = sock.recv(4096)
            assert data
            reply += data
    assert reply.decode().split("\n")[:3] == [inst.options, inst.short_id, "0"]
    assert list(inst.received) == ["*OPT?", "ID", "SP"]


def test_history_is_bounded_and_indexed_from_the_first_line():
    class Small(VirtualB2200A):
        max_history_lines = 1000

    inst = Small()
    n_lines = 150_000
    with InstrumentServer(inst) as server, connect(server) as sock:
        sock.sendall(b"*RST\n" * n_lines + b"*OPC?\n")
        assert sock.recv(16) == b"1\n"
    history = inst.received
    assert len(history) == n_lines + 1
    assert history.dropped == n_lines + 1 - 1000
    assert history[-2:] == ["*RST", "*OPC?"]
    assert history[n_lines:] == ["*OPC?"]
    with pytest.raises(IndexError, match="dropped"):
        history[0]


def test_command_history_behaves_like_a_list_while_nothing_is_dropped():
    history = CommandHistory(10)
    lines = [f"C{i}" for i in range(7)]
    for line in lines:
        history.append(line)
    assert len(history) == 7
    for index in (slice(None, 3), slice(2, None), slice(-3, None), slice(5, 2), 1, -1):
        assert history[index] == lines[index]
    with pytest.raises(IndexError):
        history[7]


def test_200_clients_at_once_each_get_an_answer():
    inst: VirtualInstrument = VirtualB2200A()
    n_clients = 200
    barrier = threading.Barrier(n_clients)

    def client(_: int) -> str:
        sock = socket.socket()
        sock.settimeout(20)
        barrier.wait(timeout=20)
        sock.connect(("127.0.0.1", server.port))
        with sock:
            sock.sendall(b"*IDN?\n")
            reply = b""
            while not reply.endswith(b"\n"):
                data = sock.recv(4096)
                if not data:
                    break
                reply += data
        return reply.decode().strip()

    start = time.monotonic()
    with InstrumentServer(inst) as server:
        assert server.host == "127.0.0.1"
        with ThreadPoolExecutor(n_clients) as pool:
            replies = list(pool.map(client, range(n_clients)))
    assert replies == [VirtualB2200A.idn] * n_clients
    assert time.monotonic() - start < 10
