"""Keysight B1530A WGFMU (waveform generator / fast measurement unit) as a pulse/read tester.

The WGFMU is not programmed with FLEX strings: Keysight ships a vendor library, the *B1530A
WGFMU Instrument Library* (``wgfmu.dll``, ``_stdcall``; installed with "B1530A WGFMU
Instrument Library & Sample Programs" from keysight.com), which talks to the B1500A
mainframe itself (/work/shared/reference/instruments.md). This module loads that library
with :mod:`ctypes` and drives it.

Sources: Keysight B1530A WGFMU Instrument Library programming guide (User's Guide,
chapter "Instrument Library Reference") and the library's header ``wgfmu.h`` (2008,
"B1530A (WGFMU) Instrument Library API and Constant Definitions"), from which every C
signature and constant below is taken. Points marked [unsure] are from memory of the guide,
not checked against the current document.

Layers:

- :func:`load_wgfmu_library` loads the shared library and sets ``argtypes``/``restype``.
- :class:`WGFMU` is a thin wrapper over *any* object with ``WGFMU_*`` attributes (the
  ctypes library, or a fake in the tests): Python strings to bytes, out-parameters and
  arrays as ctypes objects, and every return code checked (negative = error), raising
  :class:`~hil.errors.BackendError` with the library's own error text.
- :class:`instruments.testers.wgfmu.WGFMUTester` builds the tester on :class:`WGFMU`.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Sequence

import numpy as np

from hil.core.errors import BackendError, ConfigError
from hil.station.native import ALLOW_ENV

# -- constants of wgfmu.h ------------------------------------------------------------------------

CHANNELS = tuple(slot * 100 + out for slot in range(1, 11) for out in (1, 2))
"""WGFMU channel ids ``slot*100 + 1|2`` (101, 102, ..., 1002) [guide, channel id]."""

WGFMU_NO_ERROR = 0
ERROR_NAMES = {
    -1: "WGFMU_PARAMETER_OUT_OF_RANGE_ERROR",
    -2: "WGFMU_ILLEGAL_STRING_ERROR",
    -3: "WGFMU_CONTEXT_ERROR",
    -4: "WGFMU_FUNCTION_NOT_SUPPORTED_ERROR",
    -5: "WGFMU_COMMUNICATION_ERROR",
    -6: "WGFMU_FW_ERROR",
    -7: "WGFMU_LIBRARY_ERROR",
    -8: "WGFMU_ERROR",
    -9: "WGFMU_CHANNEL_NOT_FOUND_ERROR",
    -10: "WGFMU_PATTERN_NOT_FOUND_ERROR",
    -11: "WGFMU_EVENT_NOT_FOUND_ERROR",
    -12: "WGFMU_PATTERN_ALREADY_EXISTS_ERROR",
    -13: "WGFMU_SEQUENCER_NOT_RUNNING_ERROR",
    -14: "WGFMU_RESULT_NOT_READY_ERROR",
    -15: "WGFMU_RESULT_OUT_OF_DATE",
}
"""Return codes of every ``WGFMU_*`` function [wgfmu.h "API Return Value - Error Code"]."""

WGFMU_OPERATION_MODE_DC = 2000
WGFMU_OPERATION_MODE_FASTIV = 2001
WGFMU_OPERATION_MODE_PG = 2002
WGFMU_OPERATION_MODE_SMU = 2003
"""``WGFMU_setOperationMode`` [wgfmu.h]. Fast IV = ALWG output with V or I measurement."""

FORCE_VOLTAGE_RANGES = {
    "auto": 3000,
    "3V": 3001,
    "5V": 3002,
    "10V_negative": 3003,
    "10V_positive": 3004,
}
"""``WGFMU_FORCE_VOLTAGE_RANGE_*`` [wgfmu.h]."""
FORCE_VOLTAGE_LIMITS = {
    3000: (-10.0, 10.0),
    3001: (-3.0, 3.0),
    3002: (-5.0, 5.0),
    3003: (-10.0, 0.0),
    3004: (0.0, 10.0),
}
"""Output voltage span of each force range, V [guide, output ranges table; unsure whether
"auto" really spans -10..+10 V within one pattern]."""

WGFMU_MEASURE_MODE_VOLTAGE = 4000
WGFMU_MEASURE_MODE_CURRENT = 4001
"""``WGFMU_setMeasureMode`` [wgfmu.h]."""

MEASURE_CURRENT_RANGES = {
    "1uA": 6001,
    "10uA": 6002,
    "100uA": 6003,
    "1mA": 6004,
    "10mA": 6005,
}
"""``WGFMU_MEASURE_CURRENT_RANGE_*`` [wgfmu.h]."""

WGFMU_MEASURE_EVENT_DATA_AVERAGED = 12000
WGFMU_MEASURE_EVENT_DATA_RAW = 12001
"""``rawData`` argument of ``WGFMU_setMeasureEvent`` [wgfmu.h: ``WGFMU_MEASURE_EVENT_DATA_OFFSET
= 12000``, AVERAGED = offset + 0, RAW = offset + 1]. Note: AVERAGED is 12000, not 12001."""

MIN_VECTOR_S = 10e-9
MAX_VECTOR_S = 10995.11627775
"""Range of ``WGFMU_addVector``'s ``deltaTime`` (10 ns resolution) [guide, WGFMU_addVector]."""
MIN_AVERAGE_S = 10e-9
MAX_AVERAGE_S = 0.020971512
"""Range of ``WGFMU_setMeasureEvent``'s ``averagingTime`` (10 ns resolution; 0 = no
averaging) [guide, WGFMU_setMeasureEvent; unsure of the exact upper limit]."""

PATTERN = "hil_visit"
"""Name of the one pattern a visit builds (the library is cleared before every visit)."""
READ_EVENT = "hil_read"
"""Name of the read's measurement event."""

MODULE = "B1530A"

_REQUIRED = (
    "WGFMU_openSession",
    "WGFMU_closeSession",
    "WGFMU_initialize",
    "WGFMU_clear",
    "WGFMU_getErrorSize",
    "WGFMU_getError",
    "WGFMU_setOperationMode",
    "WGFMU_setForceVoltageRange",
    "WGFMU_setMeasureMode",
    "WGFMU_setMeasureCurrentRange",
    "WGFMU_connect",
    "WGFMU_disconnect",
    "WGFMU_createPattern",
    "WGFMU_addVector",
    "WGFMU_setMeasureEvent",
    "WGFMU_addSequence",
    "WGFMU_execute",
    "WGFMU_waitUntilCompleted",
    "WGFMU_getMeasureValueSize",
    "WGFMU_getMeasureValues",
)
"""Functions this module calls; a library without one of them is rejected at load time."""

_INT, _DBL, _STR = ctypes.c_int, ctypes.c_double, ctypes.c_char_p
_PINT, _PDBL = ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_double)
PROTOTYPES: dict[str, tuple] = {
    "WGFMU_openSession": (_STR,),
    "WGFMU_closeSession": (),
    "WGFMU_initialize": (),
    "WGFMU_clear": (),
    "WGFMU_setTimeout": (_DBL,),
    "WGFMU_getChannelIdSize": (_PINT,),
    "WGFMU_getChannelIds": (_PINT, _PINT),
    "WGFMU_getErrorSize": (_PINT,),
    "WGFMU_getError": (_STR, _PINT),
    "WGFMU_setOperationMode": (_INT, _INT),
    "WGFMU_setForceVoltageRange": (_INT, _INT),
    "WGFMU_setMeasureMode": (_INT, _INT),
    "WGFMU_setMeasureCurrentRange": (_INT, _INT),
    "WGFMU_connect": (_INT,),
    "WGFMU_disconnect": (_INT,),
    "WGFMU_abort": (),
    "WGFMU_createPattern": (_STR, _DBL),
    "WGFMU_addVector": (_STR, _DBL, _DBL),
    "WGFMU_addVectors": (_STR, _PDBL, _PDBL, _INT),
    "WGFMU_setMeasureEvent": (_STR, _STR, _DBL, _INT, _DBL, _DBL, _INT),
    "WGFMU_addSequence": (_INT, _STR, _DBL),
    "WGFMU_execute": (),
    "WGFMU_waitUntilCompleted": (),
    "WGFMU_getMeasureValueSize": (_INT, _PINT, _PINT),
    "WGFMU_getMeasureValues": (_INT, _INT, _PINT, _PDBL, _PDBL),
}
"""``argtypes`` of the functions used, from the C prototypes in wgfmu.h; all return ``int``."""

_DEFAULT_NAME = "wgfmu.dll" if sys.platform == "win32" else "libwgfmu.so"


def _missing_library(where: str, exc: BaseException) -> ConfigError:
    return ConfigError(
        f"cannot load the Keysight WGFMU Instrument Library from {where!r} ({exc}). "
        "The B1530A WGFMU is driven only through Keysight's vendor library: install the "
        '"B1530A WGFMU Instrument Library & Sample Programs" from keysight.com (wgfmu.dll; '
        "its files go under C:\\Program Files\\Agilent\\B1530A or ...\\Keysight\\B1530A), "
        'or set `library = "C:/path/to/wgfmu.dll"` in the tester section of the station file '
        f"(and list that path in the environment variable {ALLOW_ENV})"
    )


def load_wgfmu_library(path: str | os.PathLike | None = None):
    """Load the WGFMU library and declare the prototypes of the functions used.

    ``path`` is the library file; ``None`` loads ``wgfmu.dll`` from the DLL search path on
    Windows (``ctypes.WinDLL``: the API is ``_stdcall``) and ``libwgfmu.so`` elsewhere
    (``ctypes.CDLL``; Keysight ships the library for Windows only [unsure of any Linux
    build], so elsewhere this mainly serves a compatible replacement).

    Raises :class:`ConfigError` naming the fix when the library is missing or is not the
    WGFMU library.
    """
    target = _DEFAULT_NAME if path is None else os.fspath(path)
    loader = ctypes.WinDLL if sys.platform == "win32" else ctypes.CDLL  # type: ignore[attr-defined]
    try:
        lib = loader(target)
    except OSError as exc:
        raise _missing_library(target, exc) from None
    for name in _REQUIRED:
        if not hasattr(lib, name):
            raise ConfigError(
                f"{target!r} loaded but does not export {name}: it is not the Keysight WGFMU "
                "Instrument Library (wgfmu.dll); fix `library =` in the station file"
            )
    for name, argtypes in PROTOTYPES.items():
        try:
            func = getattr(lib, name)
        except AttributeError:  # optional function missing from an old library version
            continue
        func.argtypes = list(argtypes)
        func.restype = ctypes.c_int
    return lib


def _bytes(text: str) -> bytes:
    if isinstance(text, bytes):
        return text
    return str(text).encode("ascii")


class WGFMU:
    """The WGFMU library with Python arguments and checked return codes.

    :param lib: the object returned by :func:`load_wgfmu_library`, or anything with the same
        ``WGFMU_*`` callables (the tests pass a fake that records its calls).

    Every method calls one library function and raises :class:`BackendError` on a negative
    return code, with the text the library reports (``WGFMU_getErrorSize`` /
    ``WGFMU_getError``, read until the error queue is empty).
    """

    def __init__(self, lib) -> None:
        self.lib = lib

    def has(self, name: str) -> bool:
        """Whether the library has ``WGFMU_<name>``."""
        return hasattr(self.lib, f"WGFMU_{name}")

    def _call(self, name: str, *args) -> int:
        rc = getattr(self.lib, f"WGFMU_{name}")(*args)
        if rc is not None and int(rc) < WGFMU_NO_ERROR:
            code = int(rc)
            text = self.error_text()
            label = ERROR_NAMES.get(code, "unknown error code")
            detail = f": {text}" if text else ""
            raise BackendError(f"WGFMU_{name} failed with {code} ({label}){detail}")
        return int(rc or 0)

    def error_text(self, limit: int = 20) -> str:
        """The library's pending error strings joined by ``"; "``, ``""`` if none or unreadable.

        Never raises: it runs while another error is being reported.
        """
        texts = []
        try:
            for _ in range(limit):
                size = ctypes.c_int(0)
                if self.lib.WGFMU_getErrorSize(ctypes.pointer(size)) < 0 or size.value <= 0:
                    break
                n = size.value + 1
                buf = ctypes.create_string_buffer(n)
                if self.lib.WGFMU_getError(buf, ctypes.pointer(ctypes.c_int(n))) < 0:
                    break
                text = buf.value.decode("ascii", "replace").strip()
                if not text:
                    break
                texts.append(text)
        except Exception:  # best effort while reporting another error
            pass
        return "; ".join(texts)

    # -- session ------------------------------------------------------------------------------
    def open_session(self, address: str) -> None:
        """``WGFMU_openSession(address)``, e.g. ``"GPIB0::18::INSTR"``."""
        self._call("openSession", _bytes(address))

    def close_session(self) -> None:
        """``WGFMU_closeSession``."""
        self._call("closeSession")

    def initialize(self) -> None:
        """``WGFMU_initialize``: resets the WGFMU channels (and the B1500A) [guide; unsure]."""
        self._call("initialize")

    def clear(self) -> None:
        """``WGFMU_clear``: deletes the library's software setup (patterns, sequences,
        events, errors); the hardware is not touched [guide]."""
        self._call("clear")

    def channel_ids(self) -> list[int]:
        """``WGFMU_getChannelIdSize`` + ``WGFMU_getChannelIds``: the installed channels."""
        size = ctypes.c_int(0)
        self._call("getChannelIdSize", ctypes.pointer(size))
        n = max(size.value, 0)
        ids = (ctypes.c_int * max(n, 1))()
        got = ctypes.c_int(n)
        self._call("getChannelIds", ids, ctypes.pointer(got))
        return [int(ids[i]) for i in range(min(max(got.value, 0), n))]

    # -- channel setup ------------------------------------------------------------------------
    def set_operation_mode(self, channel: int, mode: int) -> None:
        """``WGFMU_setOperationMode(channel, mode)`` (``WGFMU_OPERATION_MODE_*``)."""
        self._call("setOperationMode", int(channel), int(mode))

    def set_force_voltage_range(self, channel: int, rng: int) -> None:
        """``WGFMU_setForceVoltageRange(channel, range)`` (:data:`FORCE_VOLTAGE_RANGES`)."""
        self._call("setForceVoltageRange", int(channel), int(rng))

    def set_measure_mode(self, channel: int, mode: int) -> None:
        """``WGFMU_setMeasureMode(channel, mode)`` (``WGFMU_MEASURE_MODE_*``)."""
        self._call("setMeasureMode", int(channel), int(mode))

    def set_measure_current_range(self, channel: int, rng: int) -> None:
        """``WGFMU_setMeasureCurrentRange(channel, range)`` (:data:`MEASURE_CURRENT_RANGES`)."""
        self._call("setMeasureCurrentRange", int(channel), int(rng))

    def connect(self, channel: int) -> None:
        """``WGFMU_connect``: enables the channel and its RSU output relay."""
        self._call("connect", int(channel))

    def disconnect(self, channel: int) -> None:
        """``WGFMU_disconnect``: disables the channel and its RSU."""
        self._call("disconnect", int(channel))

    # -- patterns, events, sequences --------------------------------------------------------
    def create_pattern(self, pattern: str, initial_V: float) -> None:
        """``WGFMU_createPattern(pattern, initial_V)``: a new pattern starting at ``initial_V``."""
        self._call("createPattern", _bytes(pattern), float(initial_V))

    def add_vector(self, pattern: str, delta_s: float, voltage: float) -> None:
        """``WGFMU_addVector``: a linear ramp from the last point to ``voltage`` in
        ``delta_s``."""
        self._call("addVector", _bytes(pattern), float(delta_s), float(voltage))

    def add_vectors(self, pattern: str, deltas_s: Sequence[float], volts: Sequence[float]):
        """``WGFMU_addVectors(pattern, deltas, volts, n)``: several :meth:`add_vector` at once."""
        n = len(deltas_s)
        if len(volts) != n:
            raise ConfigError("WGFMU add_vectors: as many times as voltages are needed")
        self._call(
            "addVectors",
            _bytes(pattern),
            (ctypes.c_double * n)(*deltas_s),
            (ctypes.c_double * n)(*volts),
            n,
        )

    def set_measure_event(
        self,
        pattern: str,
        event: str,
        time_s: float,
        points: int,
        interval_s: float,
        average_s: float,
        raw_data: int = WGFMU_MEASURE_EVENT_DATA_AVERAGED,
    ) -> None:
        """``WGFMU_setMeasureEvent(pattern, event, time, points, interval, average,
        rawData)``: measure ``points`` points from ``time_s`` into the pattern."""
        self._call(
            "setMeasureEvent",
            _bytes(pattern),
            _bytes(event),
            float(time_s),
            int(points),
            float(interval_s),
            float(average_s),
            int(raw_data),
        )

    def add_sequence(self, channel: int, pattern: str, count: float = 1.0) -> None:
        """``WGFMU_addSequence(channel, pattern, count)``: play ``pattern`` ``count`` times."""
        self._call("addSequence", int(channel), _bytes(pattern), float(count))

    # -- run and fetch -------------------------------------------------------------------------
    def execute(self) -> None:
        """``WGFMU_execute``: applies the channel setup and runs the sequencers."""
        self._call("execute")

    def wait_until_completed(self) -> None:
        """``WGFMU_waitUntilCompleted``: blocks until every sequencer has stopped."""
        self._call("waitUntilCompleted")

    def abort(self) -> None:
        """``WGFMU_abort``: stops the sequencers."""
        self._call("abort")

    def measure_value_size(self, channel: int) -> tuple[int, int]:
        """``(measured, total)`` points of ``channel`` (``WGFMU_getMeasureValueSize``)."""
        measured, total = ctypes.c_int(0), ctypes.c_int(0)
        self._call(
            "getMeasureValueSize", int(channel), ctypes.pointer(measured), ctypes.pointer(total)
        )
        return measured.value, total.value

    def measure_values(self, channel: int, offset: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """``(times, values)`` of ``size`` points from ``offset`` (``WGFMU_getMeasureValues``);
        the library may return fewer (it writes the count back)."""
        n = max(int(size), 0)
        times = (ctypes.c_double * max(n, 1))()
        values = (ctypes.c_double * max(n, 1))()
        got = ctypes.c_int(n)
        self._call(
            "getMeasureValues", int(channel), int(offset), ctypes.pointer(got), times, values
        )
        k = min(max(got.value, 0), n)
        return np.array(times[:k], dtype=np.float64), np.array(values[:k], dtype=np.float64)
