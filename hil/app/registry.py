"""Backend spec strings, as users type them (``--backend emulator:joshi2020``), to backends.

A spec is ``KIND`` or ``KIND:ARG``; each kind is one :func:`register_backend` factory.
Known kinds:

- ``emulator`` or ``emulator:PRESET`` — the statistical PCM emulator
  (:mod:`sim_backends.emulator`; presets in :mod:`sim_backends.emulator.presets`).
- ``station:STATION.toml`` — real devices on a probe station
  (:class:`instruments.hardware.HardwareBackend`); the station file may put only some
  network layers on the station and the rest on an emulator (``[placement]``,
  :mod:`hil.app.placement`).
- ``fitted:MODEL.h5`` — devices drawn from a model fitted to a pulse log by ``hil fit``
  (:mod:`sim_backends.fitted`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hil.app.placement import place_layers
from hil.core.backend import DeviceBackend
from hil.core.errors import ConfigError
from hil.station.parser import load_station
from sim_backends.emulator import EmulatorBackend, PCMParams, preset
from sim_backends.emulator.presets import DEFAULT_PRESET
from sim_backends.fitted import FittedBackend

BackendFactory = Callable[[str, int, int, Sequence[int] | None], DeviceBackend]
"""``factory(arg, n_devices, seed, layer_devices)`` → the backend; ``arg`` is the text after
``KIND:`` ('' if none), ``layer_devices`` the devices of each network layer, in id order."""

BACKEND_KINDS: dict[str, BackendFactory] = {}
"""Spec kinds → factories, in registration order."""

EXCLUSIVE_KINDS: set[str] = set()
"""Spec kinds whose devices are physical: one run at a time may use them (``hil sweep``
refuses to run them in parallel)."""


def register_backend(
    kind: str, *, exclusive: bool = False
) -> Callable[[BackendFactory], BackendFactory]:
    """Decorator: make ``factory`` serve the backend spec ``kind`` / ``kind:ARG``;
    ``exclusive``: its devices are physical, so runs on it cannot run side by side."""

    def register(factory: BackendFactory) -> BackendFactory:
        BACKEND_KINDS[kind] = factory
        if exclusive:
            EXCLUSIVE_KINDS.add(kind)
        return factory

    return register


def is_exclusive(spec: str) -> bool:
    """Runs on backend ``spec`` hold physical devices: one at a time."""
    return spec.partition(":")[0] in EXCLUSIVE_KINDS


def make_backend(
    spec: str,
    n_devices: int,
    seed: int = 0,
    layer_devices: Sequence[int] | None = None,
    emulator: Mapping[str, Any] | None = None,
) -> DeviceBackend:
    """The backend named by ``spec`` with ``n_devices`` devices.

    ``layer_devices`` — devices of each network layer, in id order — lets a station file
    place chosen layers on the station. ``emulator``: device-model fields
    (:class:`~sim_backends.emulator.params.PCMParams`) that override an emulator spec's
    preset, e.g. ``{"read_noise": "gaussian"}`` (a configuration's ``[emulator]`` table).
    """
    kind, _, arg = spec.partition(":")
    factory = BACKEND_KINDS.get(kind)
    if factory is None:
        raise ConfigError(
            f"unknown backend {spec!r}; use one of: "
            + ", ".join(f"{k}[:ARG]" for k in BACKEND_KINDS)
        )
    if emulator:
        if kind != "emulator":
            raise ConfigError(
                f"config table [emulator] sets device-model fields of the emulator; backend "
                f"{spec!r} is no emulator: remove the table or use --backend emulator[:PRESET]"
            )
        return emulator_backend(arg, n_devices, seed, emulator)
    return factory(arg, n_devices, seed, layer_devices)


@register_backend("emulator")
def _emulator(
    name: str, n_devices: int, seed: int, layer_devices: Sequence[int] | None
) -> DeviceBackend:
    return emulator_backend(name, n_devices, seed)


def emulator_backend(
    name: str, n_devices: int, seed: int, emulator: Mapping[str, Any] | None = None
) -> DeviceBackend:
    """The emulator of preset ``name`` (default :data:`DEFAULT_PRESET`), its fields
    overridden by ``emulator``."""
    params = PCMParams.from_dict(emulator or {}, base=preset(name or DEFAULT_PRESET))
    return EmulatorBackend(n_devices, params=params, seed=seed)


@register_backend("station", exclusive=True)
def _station(
    path: str, n_devices: int, seed: int, layer_devices: Sequence[int] | None
) -> DeviceBackend:
    if not path:
        raise ConfigError("backend 'station' needs a station file: station:STATION.toml")
    return place_layers(load_station(path), n_devices, seed, layer_devices)


@register_backend("fitted")
def _fitted(
    path: str, n_devices: int, seed: int, layer_devices: Sequence[int] | None
) -> DeviceBackend:
    if not path:
        raise ConfigError("backend 'fitted' needs a model path: fitted:MODEL.h5 (hil fit)")
    return FittedBackend(path, n_devices, seed=seed)
