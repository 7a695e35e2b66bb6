"""Backend spec strings, as users type them (``--backend emulator:joshi2020``), to backends.

Known kinds:

- ``emulator`` or ``emulator:PRESET`` — the statistical PCM emulator
  (:mod:`sim_backends.emulator`; presets listed by ``sim_backends.pcm_models``).
- ``station:STATION.toml`` — real devices on a probe station
  (:class:`instruments.hardware.HardwareBackend`); the station file may put only some
  network layers on the station and the rest on an emulator (``[placement]``).
- ``fitted:MODEL.h5`` — devices drawn from a model fitted to a pulse log by ``hil fit``
  (:mod:`sim_backends.fitted`).

Implementations are imported lazily so that ``hil --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence

from hil.core.backend import DeviceBackend
from hil.core.composite import CompositeBackend
from hil.core.errors import ConfigError

KINDS = ("emulator", "station", "fitted")


def make_backend(
    spec: str, n_devices: int, seed: int = 0, layer_devices: Sequence[int] | None = None
) -> DeviceBackend:
    """The backend named by ``spec`` with ``n_devices`` devices.

    ``layer_devices`` — devices of each network layer, in id order — lets a station file
    place chosen layers on the station.
    """
    kind, _, arg = spec.partition(":")
    if kind == "station":
        if not arg:
            raise ConfigError("backend 'station' needs a station file: station:STATION.toml")
        return _station_backend(arg, n_devices, seed, layer_devices)
    if kind == "emulator":
        from sim_backends.emulator import EmulatorBackend

        return EmulatorBackend(n_devices, params=arg or "nandakumar2018", seed=seed)
    if kind == "fitted":
        if not arg:
            raise ConfigError("backend 'fitted' needs a model path: fitted:MODEL.h5 (hil fit)")
        from sim_backends.fitted import FittedBackend

        return FittedBackend(arg, n_devices, seed=seed)
    raise ConfigError(
        f"unknown backend {spec!r}; use one of: " + ", ".join(f"{k}[:ARG]" for k in KINDS)
    )


def _station_backend(path, n_devices, seed, layer_devices) -> DeviceBackend:
    from hil.station.parser import load_station
    from instruments.hardware import HardwareBackend

    station = load_station(path)
    if station.hardware_layers is None:
        return HardwareBackend(station, n_devices)
    sizes = list(layer_devices or [n_devices])
    if sum(sizes) != n_devices:
        raise ConfigError(f"layer_devices {sizes} do not add up to {n_devices} devices")
    chosen = set()
    for layer in station.hardware_layers:
        if not -len(sizes) <= layer < len(sizes):
            raise ConfigError(
                f"{station.where('placement', 'hardware_layers')}: layer {layer} does not "
                f"exist; the network has {len(sizes)} layers of PCM devices"
            )
        chosen.add(layer % len(sizes))
    ks = sorted(chosen)
    if ks != list(range(ks[0], ks[-1] + 1)):
        raise ConfigError(
            f"{station.where('placement', 'hardware_layers')}: the station layers must be "
            "adjacent (e.g. [-2, -1])"
        )
    before = sum(sizes[: ks[0]])
    on_station = sum(sizes[ks[0] : ks[-1] + 1])
    after = n_devices - before - on_station
    hardware = HardwareBackend(station, on_station)
    from sim_backends.emulator import EmulatorBackend

    # Emulated layers before and after the station's block, one emulator each, seeded in order.
    parts, seeds = [], iter(range(seed, seed + 2))
    for k, size in enumerate((before, on_station, after)):
        if k == 1:
            parts.append((hardware, size))
        elif size:
            parts.append((EmulatorBackend(size, params=station.emulator, seed=next(seeds)), size))
    return CompositeBackend(parts)
