"""One ``outputs_off`` contract for every tester: each step is tried even when every one
fails, then one OutputsOffError lists each failed step. Also: the B2200A's error-queue read
is bounded."""

from __future__ import annotations

import pytest
from pymeasure.adapters import ProtocolAdapter
from pymeasure.test import expected_protocol

from hil.core.errors import BackendError
from instruments.drivers.b1500a import B1500A
from instruments.drivers.b2200a import B2200A, MAX_ERROR_READS
from instruments.drivers.k4200a import K4200A
from instruments.testers.b1500a import B1500ATester
from instruments.testers.base import OutputsOffError
from instruments.testers.k4200a import K4200ATester
from instruments.testers.wgfmu import WGFMUTester


class DeadLink(ProtocolAdapter):
    """A connection whose every write fails (the instrument went away); records what the
    tester tried to send."""

    def __init__(self) -> None:
        super().__init__([])
        self.tried: list[str] = []

    def _write(self, command: str, **kwargs) -> None:
        self.tried.append(command)
        raise BrokenPipeError(32, "Broken pipe")

    def _read(self, **kwargs) -> str:
        raise BrokenPipeError(32, "Broken pipe")


class DeadWGFMULibrary:
    """A WGFMU library whose every function returns 0 until ``dead``, then -5
    (WGFMU_COMMUNICATION_ERROR); records the functions called."""

    def __init__(self) -> None:
        self.dead = False
        self.called: list[str] = []

    def __getattr__(self, name: str):
        if not name.startswith("WGFMU_"):
            raise AttributeError(name)

        def call(*args):
            self.called.append(name)
            return -5 if self.dead else 0

        return call


def _b1500a():
    link = DeadLink()
    return B1500ATester(B1500A(link)), link.tried


def _k4200a():
    inst = K4200A(ProtocolAdapter([("*OPT?", "SMU1,SMU2,PMU1")]))
    tester = K4200ATester(inst)
    inst.adapter = DeadLink()
    return tester, inst.adapter.tried


def _wgfmu():
    lib = DeadWGFMULibrary()
    tester = WGFMUTester("GPIB0::18::INSTR", library=lib)
    tester.setup()
    lib.dead = True
    lib.called.clear()
    return tester, lib.called


STEPS = {
    "b1500a": (_b1500a, ["SPP", "DZ", "CL", "*OPC?"]),
    "k4200a": (_k4200a, [":PMU:OUTPUT:STATE 1, 0", "US;DV1,0,0,0.001", "US;DV1"]),
    "wgfmu": (_wgfmu, ["WGFMU_disconnect", "WGFMU_closeSession"]),
}


@pytest.mark.parametrize("kind", sorted(STEPS))
def test_outputs_off_tries_every_step_and_reports_each_failure(kind):
    make, commands = STEPS[kind]
    tester, tried = make()
    with pytest.raises(OutputsOffError) as info:
        tester.outputs_off()
    # every step went out, in order, although each one failed
    assert [c for c in tried if not c.startswith("WGFMU_getError")] == commands
    assert len(info.value.failures) == len(commands)
    message = str(info.value)
    assert f"{len(commands)} step(s) failed" in message
    for step, _ in info.value.failures:
        assert step in message
    assert isinstance(info.value, BackendError)  # the station's safe stop reports it


def test_b1500a_outputs_off_after_a_partial_failure_still_sends_the_rest():
    off = [("DZ", None), ("CL", None), ("*OPC?", "1")]
    with expected_protocol(B1500A, off) as inst:
        tester = B1500ATester(inst)

        def refused(slot):
            raise BackendError("SPP refused")

        inst.stop_pulses = refused
        with pytest.raises(OutputsOffError, match=r"1 step\(s\) failed \(SPP: BackendError"):
            tester.outputs_off()


def test_b2200a_check_errors_stops_after_a_bounded_number_of_reads():
    endless = [(":SYST:ERR?", '-350,"Queue overflow"')] * MAX_ERROR_READS
    with expected_protocol(B2200A, endless) as inst:
        with pytest.raises(BackendError, match=f"after {MAX_ERROR_READS} reads"):
            inst.check_errors()
