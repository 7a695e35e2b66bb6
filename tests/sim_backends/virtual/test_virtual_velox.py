"""pymeasure's own Velox driver against the virtual Velox, over PyVISA @py and a socket."""

import pytest
from pymeasure.instruments.formfactor.velox import Velox

from sim_backends.virtual.server import InstrumentServer
from sim_backends.virtual.velox import VirtualVelox


@pytest.fixture
def velox():
    inst = VirtualVelox(columns=2, rows=2)
    with InstrumentServer(inst) as server:
        drv = Velox(
            server.resource,
            visa_library="@py",
            timeout=2000,
            read_termination="\n",
            write_termination="\n",
        )
        try:
            yield inst, drv
        finally:
            drv.adapter.close()


def test_walks_the_map_until_703(velox):
    inst, drv = velox
    assert drv.wafermap.step_first_die() == [0, 0, 0, 1]
    dies = [(0, 0)]
    while True:
        drv.chuck.move_contact()
        assert inst.height == "contact"
        drv.chuck.move_separation()
        try:
            c, r, _, _ = drv.wafermap.step_next_die()
        except ValueError:  # 703: the reply text is not coordinates
            break
        dies.append((c, r))
    assert drv.wafermap.end_reached
    assert dies == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert inst.steps == 4


def test_step_to_die_and_errors(velox):
    inst, drv = velox
    drv.wafermap.step_to_die(1, 1)
    assert inst.route[inst.index] == (1, 1)
    with pytest.raises(ConnectionError, match="8: Die 5 5 is not in the wafer map"):
        drv.wafermap.step_to_die(5, 5)
    with pytest.raises(ConnectionError, match="509: Unknown command"):
        drv.ask("FlyToTheMoon")
