"""Named, cited parameter sets of the statistical PCM emulator.

- ``nandakumar2018``: the :class:`~sim_backends.emulator.params.PCMParams` defaults,
  [Nandakumar 2018] device physics plus this project's device-to-device spreads.
- ``joshi2020``: [Joshi 2020] / aihwkit ``PCMLikeNoiseModel`` programming noise, drift and
  1/f read noise on Nandakumar's partial SET and RESET.
- ``ideal``: every physics term off (deterministic, for tests).

The sources are listed in :mod:`sim_backends.emulator.params`. :func:`preset` returns one by
name, :func:`preset_names` lists them; an unknown name raises
:class:`hil.core.errors.ConfigError`.
"""

from __future__ import annotations

from collections.abc import Callable

from hil.core.errors import ConfigError
from sim_backends.emulator.params import PCMParams

__all__ = ["DEFAULT_PRESET", "preset", "preset_names", "resolve_params"]

DEFAULT_PRESET = "joshi2020"
"""The preset a training run's ``backend = "emulator"`` means: the truthful one — drift
exponent ν(G) with device-to-device spread and 1/f read noise accumulated since
programming [Joshi 2020], on Nandakumar 2018's partial SET and RESET (issue 14)."""


def _nandakumar2018() -> PCMParams:
    """Partial-SET, RESET, drift and Gaussian read noise of Nandakumar 2018 (the dataclass
    defaults), plus this project's device-to-device spreads and stuck devices [ours]."""
    return PCMParams(name="nandakumar2018")


def _joshi2020() -> PCMParams:
    """Joshi 2020 / aihwkit PCMLikeNoiseModel: programming noise, per-device drift exponent
    (t0 = 20 s), 1/f read noise, g_max = 25 µS. Joshi has no partial-SET or RESET model, so
    those stay Nandakumar 2018's; spreads and stuck devices [ours] as in nandakumar2018."""
    return PCMParams(
        name="joshi2020",
        g_max_uS=25.0,
        g_norm_uS=25.0,
        drift_t0_s=20.0,
        drift_nu_mu0=0.0244,
        drift_nu_mu_log=-0.0155,
        drift_nu_mu_min=0.049,
        drift_nu_mu_max=0.1,
        drift_nu_sigma0=-0.0059,
        drift_nu_sigma_log=-0.0125,
        drift_nu_sigma_min=0.008,
        drift_nu_sigma_max=0.045,
        read_noise="1/f",
    )


def _ideal() -> PCMParams:
    """Noise-free, drift-free, spread-free, no stuck devices: deterministic mean increments,
    exact RESET and exact ramp targets. For tests and for separating model terms."""
    return PCMParams(
        name="ideal",
        g_max_d2d_rel_std=0.0,
        set_sigma0_uS=0.0,
        set_sigma_g=0.0,
        set_sigma_p_uS=0.0,
        set_step_d2d_rel_std=0.0,
        reset_rel_std=0.0,
        prog_noise_scale=0.0,
        drift_enabled=False,
        read_noise="none",
        stuck_fraction=0.0,
    )


_PRESETS: dict[str, Callable[[], PCMParams]] = {
    "nandakumar2018": _nandakumar2018,
    "joshi2020": _joshi2020,
    "ideal": _ideal,
}


def preset_names() -> tuple[str, ...]:
    """Names accepted by :func:`preset`."""
    return tuple(_PRESETS)


def preset(name: str) -> PCMParams:
    """The named parameter set; :class:`ConfigError` listing the known names otherwise."""
    try:
        factory = _PRESETS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown PCM preset {name!r}; known presets: {', '.join(_PRESETS)}"
        ) from None
    return factory()


def resolve_params(params: str | PCMParams) -> PCMParams:
    """A preset name or a :class:`PCMParams` → :class:`PCMParams`."""
    if isinstance(params, PCMParams):
        return params
    if isinstance(params, str):
        return preset(params)
    raise ConfigError(
        f"PCM parameters must be a preset name ({', '.join(_PRESETS)}) or a PCMParams, "
        f"got {type(params).__name__}"
    )
