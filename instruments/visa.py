"""Small helpers for PyVISA connections shared by the drivers."""

from __future__ import annotations

import socket

from pyvisa import constants


def visa_kwargs(visa_library: str, timeout_ms: int) -> dict:
    """Keyword arguments for a pymeasure :class:`Instrument` opened on a resource name."""
    kwargs: dict = {"timeout": timeout_ms}
    if visa_library:
        kwargs["visa_library"] = visa_library
    return kwargs


def drain(instrument, timeout_ms: int = 20) -> None:
    """Discard replies still in flight on ``instrument``'s connection.

    After a read timed out, the late reply may still arrive; left in the buffer it would be
    read as the answer to the next query. Reading with a short timeout until nothing comes
    puts the conversation back in step.
    """
    conn = getattr(getattr(instrument, "adapter", None), "connection", None)
    if conn is None:
        return
    old = conn.timeout
    try:
        conn.timeout = timeout_ms
        for _ in range(1000):
            conn.read_raw()
    except Exception:  # noqa: BLE001 - a timeout (or a dead link) ends the drain
        pass
    finally:
        try:
            conn.timeout = old
        except Exception:  # noqa: BLE001
            pass


def no_delay(instrument) -> None:
    """Send each command at once on a TCP socket resource (``VI_ATTR_TCPIP_NODELAY``).

    NI-VISA's default is on; pyvisa-py leaves Nagle's algorithm on, and then a query after
    a burst of writes waits ~40 ms for a delayed ACK — measured: 45 ms per device visit
    instead of < 1 ms on the virtual station.
    """
    conn = getattr(getattr(instrument, "adapter", None), "connection", None)
    if conn is None or not str(getattr(conn, "resource_name", "")).upper().endswith("SOCKET"):
        return
    try:
        conn.set_visa_attribute(constants.ResourceAttribute.tcpip_nodelay, True)
        return
    except Exception:  # noqa: BLE001 - pyvisa-py 0.7/0.8 rejects the attribute on sockets
        pass
    # pyvisa-py has a setter for it but does not dispatch to it; set it on its socket.
    session = getattr(getattr(conn, "visalib", None), "sessions", {}).get(conn.session)
    sock = getattr(session, "interface", None)
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
