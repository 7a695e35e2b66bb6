"""Backend spec strings, as users type them (``--backend emulator:joshi2020``), to backends.

Known kinds:

- ``emulator`` or ``emulator:PRESET`` — the statistical PCM emulator
  (:mod:`sim_backends.emulator`; presets listed by ``sim_backends.pcm_models``).

Implementations are imported lazily so that ``hil --help`` stays fast.
"""

from __future__ import annotations

from hil.backend import DeviceBackend
from hil.errors import ConfigError

KINDS = ("emulator",)


def make_backend(spec: str, n_devices: int, seed: int = 0) -> DeviceBackend:
    """The backend named by ``spec`` with ``n_devices`` devices."""
    kind, _, arg = spec.partition(":")
    if kind == "emulator":
        from sim_backends.emulator import EmulatorBackend

        return EmulatorBackend(n_devices, params=arg or "nandakumar2018", seed=seed)
    raise ConfigError(
        f"unknown backend {spec!r}; use one of: " + ", ".join(f"{k}[:ARG]" for k in KINDS)
    )
