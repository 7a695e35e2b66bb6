"""The SENTIO driver against the virtual prober, over PyVISA @py and a real socket."""

import pytest

from instruments.drivers.sentio import Sentio
from instruments.errors import ProberError
from sim_backends.virtual.sentio import VirtualSentio
from sim_backends.virtual.server import InstrumentServer


@pytest.fixture
def prober():
    inst = VirtualSentio(columns=3, rows=2)
    with InstrumentServer(inst) as server:
        drv = Sentio(server.resource, visa_library="@py", timeout=2000)
        try:
            yield inst, drv
        finally:
            drv.adapter.close()


def test_walks_the_wafer_map_and_reports_end_of_route(prober):
    inst, drv = prober
    assert drv.step_first_die() == (0, 0, 0)
    seen = [(0, 0)]
    while not drv.end_of_route:
        c, r, _ = drv.step_next_die()
        seen.append((c, r))
    assert seen == [(c, r) for r in range(2) for c in range(3)]
    assert drv.die_position() == (2, 1)
    assert inst.steps == 5


def test_contact_separation_and_direct_steps(prober):
    inst, drv = prober
    drv.move_chuck_contact()
    assert inst.in_contact
    drv.move_chuck_separation()
    assert not inst.in_contact
    assert drv.step_die(1, 1) == (1, 1, 0)
    assert drv.die_position() == (1, 1)


def test_prober_errors_raise_with_code_and_text(prober):
    inst, drv = prober
    with pytest.raises(ProberError, match="error 8: Die 9,9 is not in the wafer map"):
        drv.step_die(9, 9)
    assert drv.die_position() == (0, 0)  # nothing moved
