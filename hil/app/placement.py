"""``[placement]``: which network layers run on the probe station and which on an emulator.

A station file may put only some layers of the network on real devices (``hardware_layers``,
Python indices into the layers of PCM devices, ``-1`` = the output layer; they must be
adjacent) and the rest on an emulator preset (``emulator``). The run then sees one
:class:`~hil.core.composite.CompositeBackend` over the network's device ids: the emulated
layers before the station's block, the station's block, the emulated layers after it.
"""

from __future__ import annotations

from collections.abc import Sequence

from hil.core.backend import DeviceBackend
from hil.core.composite import CompositeBackend
from hil.core.errors import ConfigError
from hil.station.model import Station
from instruments.hardware import HardwareBackend
from sim_backends.emulator import EmulatorBackend


def place_layers(
    station: Station, n_devices: int, seed: int, layer_devices: Sequence[int] | None
) -> DeviceBackend:
    """The backend of ``n_devices`` devices that ``station``'s ``[placement]`` describes.

    ``layer_devices``: devices of each network layer, in id order (``None``: one layer).
    Without ``[placement]`` every device is on the station.
    """
    if station.hardware_layers is None:
        return HardwareBackend(station, n_devices)
    first, on_station = station_block(station, n_devices, layer_devices)
    after = n_devices - first - on_station
    hardware = HardwareBackend(station, on_station)
    # Emulated layers before and after the station's block, one emulator each, seeded in order.
    parts: list[tuple[DeviceBackend, int]] = []
    seeds = iter(range(seed, seed + 2))
    for k, size in enumerate((first, on_station, after)):
        if k == 1:
            parts.append((hardware, size))
        elif size:
            parts.append((EmulatorBackend(size, params=station.emulator, seed=next(seeds)), size))
    return CompositeBackend(parts)


def station_block(
    station: Station, n_devices: int, layer_devices: Sequence[int] | None
) -> tuple[int, int]:
    """``(first global device id, number of devices)`` of the run's devices on ``station``:
    the layers ``[placement] hardware_layers`` names, or all ``n_devices`` without it.

    Derived from the station file and the network alone, so a run file's stored station
    text says where its station devices were without contacting any instrument.
    """
    if station.hardware_layers is None:
        return 0, n_devices
    sizes = list(layer_devices or [n_devices])
    if sum(sizes) != n_devices:
        raise ConfigError(f"layer_devices {sizes} do not add up to {n_devices} devices")
    first, last = _station_block(station, len(sizes))
    return sum(sizes[:first]), sum(sizes[first : last + 1])


def _station_block(station: Station, n_layers: int) -> tuple[int, int]:
    """First and last layer index on the station, checked against a network of
    ``n_layers`` layers of devices."""
    where = station.where("placement", "hardware_layers")
    chosen = set()
    for layer in station.hardware_layers or ():
        if not -n_layers <= layer < n_layers:
            raise ConfigError(
                f"{where}: layer {layer} does not exist; the network has {n_layers} layers "
                "of PCM devices"
            )
        chosen.add(layer % n_layers)
    ks = sorted(chosen)
    if ks != list(range(ks[0], ks[-1] + 1)):
        raise ConfigError(f"{where}: the station layers must be adjacent (e.g. [-2, -1])")
    return ks[0], ks[-1]
