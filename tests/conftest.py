"""Shared fixtures: the real MNIST through HIL_DATA_DIR (CI sets it to ../shared/datasets)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from hil.station.model import encode_channel
from instruments.drivers.b2200a import B2200A
from instruments.drivers.sentio import Sentio
from sim_backends.virtual.b2200a import VirtualB2200A
from sim_backends.virtual.sentio import VirtualSentio
from sim_backends.virtual.server import InstrumentServer
from sim_backends.virtual.wafer import VirtualWafer

os.environ.setdefault("MPLBACKEND", "Agg")


# The real-hardware tier's options live here, at the root, so that `pytest -m hardware
# --station FILE` works from the project root as well as `pytest tests/hardware ...`.
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hardware", "real-hardware tests (tests/hardware)")
    group.addoption(
        "--station",
        metavar="FILE",
        help="Station file of the station to test; without it the hardware tests are skipped.",
    )
    group.addoption(
        "--destructive-devices",
        metavar="ID,ID",
        help="Spare devices (station device ids) the destructive check may program.",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hardware: needs a real station (--station FILE)")
    config.addinivalue_line(
        "markers", "destructive: programs the --destructive-devices (needs that option too)"
    )


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder holding the MNIST IDX files, or skip with the reason."""
    env = os.environ.get("HIL_DATA_DIR", "")
    if not env:
        pytest.skip("HIL_DATA_DIR is not set; point it at a folder with mnist/ (CI does)")
    folder = Path(env) / "mnist"
    if not (folder / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"no MNIST under {folder}")
    return folder


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    from hil.data import load_mnist

    return load_mnist(mnist_dir, download=False)


# No test may reach the network: the MNIST loader must find files or fail.
os.environ.setdefault("HIL_NO_DOWNLOAD", "1")


CARD, FORCE, GROUND = 1, 1, 2
"""Matrix card and input ports of the small wired stations below."""


class WiredStation:
    """A virtual tester, B2200A and SENTIO on a four-device wafer, served on sockets, with
    the real drivers opened over PyVISA @py."""

    def __init__(self, wafer, virtual, tester, matrix, prober):
        self.wafer, self.virtual, self.tester = wafer, virtual, tester
        self.matrix, self.prober = matrix, prober

    def route(self, device: int) -> None:
        """Connect ``device``: its die in contact, top pin on the force port, bottom pin on
        the ground port (matrix channel = card*10000 + port*100 + pin)."""
        w = self.wafer
        col, row = w.prober.route[int(w.die[device])]
        self.prober.move_chuck_separation()
        self.prober.step_die(col, row)
        self.prober.move_chuck_contact()
        self.matrix.open_card(CARD)
        self.matrix.close_channels(
            [
                encode_channel(CARD, FORCE, int(w.top_pin[device])),
                encode_channel(CARD, GROUND, int(w.bottom_pin[device])),
            ]
        )
        assert self.matrix.operation_complete


@pytest.fixture
def wired_station():
    """``make(virtual_tester_factory(wafer), tester_factory(resource))`` → a WiredStation."""
    stack = contextlib.ExitStack()
    opened = []

    def make(virtual_factory, tester_factory) -> WiredStation:
        sentio, b2200 = VirtualSentio(columns=2, rows=1), VirtualB2200A()
        wafer = VirtualWafer(
            die=[0, 0, 1, 1],
            top_pin=[1, 2, 1, 2],
            bottom_pin=[10, 10, 10, 10],
            prober=sentio,
            matrix=b2200,
            card=CARD,
            force_port=FORCE,
            ground_port=GROUND,
            seed=0,
        )
        virtual = virtual_factory(wafer)
        servers = [stack.enter_context(InstrumentServer(i)) for i in (virtual, b2200, sentio)]
        tester = tester_factory(servers[0].resource)
        matrix = B2200A(servers[1].resource, visa_library="@py", timeout=2000)
        prober = Sentio(servers[2].resource, visa_library="@py", timeout=2000)
        opened.append((tester, matrix, prober))
        return WiredStation(wafer, virtual, tester, matrix, prober)

    yield make
    for tester, matrix, prober in opened:
        tester.outputs_off()
        for drv in (tester.inst, matrix, prober):
            drv.adapter.close()
    stack.close()


def _as_legacy_layout(path: Path, version: int) -> Path:
    """Turn a log the writer made with ``codec="blosc2"`` into what schema ``version`` (1 or
    2) writers stored: the same Blosc2 frames plus a stored ``current_A`` column (g_S·read_V),
    with Fletcher32 on every chunk (2) or on none (1)."""
    import h5py  # noqa: PLC0415 - only the tests that ask for the fixture need it
    import numpy as np  # noqa: PLC0415

    from hil.runfile.blosc2_codec import Blosc2Codec  # noqa: PLC0415
    from hil.runfile.schema import CURRENT, LEGACY_COLUMNS  # noqa: PLC0415

    with h5py.File(path, "r+") as f:
        pulses = f["pulses"]
        assert pulses.attrs["codec"] == "blosc2", "write the log with codec='blosc2'"
        ch = pulses["g_S"].chunks[0]
        n = pulses["g_S"].shape[0]
        codec = Blosc2Codec(LEGACY_COLUMNS, ch)
        current = pulses.create_dataset(
            CURRENT.name,
            (n,),
            CURRENT.np_dtype,
            chunks=(ch,),
            maxshape=(None,),
            **codec.dataset_filters(CURRENT),
        )
        product = pulses["g_S"][...] * pulses["read_V"][...]
        padded = np.zeros(-(-n // ch) * ch, np.float32)
        padded[:n] = product
        for k in range(padded.size // ch):
            current.id.write_direct_chunk(
                (k * ch,), codec.encode(CURRENT, padded[k * ch : (k + 1) * ch])
            )
        for c in LEGACY_COLUMNS if version == 1 else ():
            old = pulses[c.name]
            chunks = [old.id.read_direct_chunk((k * ch,)) for k in range(-(-n // ch))]
            attrs = dict(old.attrs)
            del pulses[c.name]
            plain = {k: v for k, v in codec.dataset_filters(c).items() if k != "fletcher32"}
            new = pulses.create_dataset(
                c.name, (n,), c.np_dtype, chunks=(ch,), maxshape=(None,), **plain
            )
            new.attrs.update(attrs)
            for k, (mask, raw) in enumerate(chunks):
                new.id.write_direct_chunk((k * ch,), raw[:-4], filter_mask=mask)
        del pulses.attrs["codec"]
        f.attrs["schema_version"] = np.int64(version)
    return path


@pytest.fixture
def as_legacy_layout():
    """``as_legacy_layout(path, version)``: a blosc2 log rewritten as schema 1 or 2 stored it."""
    return _as_legacy_layout
