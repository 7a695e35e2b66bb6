"""Training configuration: TOML files read into dataclasses, one docstring per field.

A TOML file has a top-level table per dataclass (``[train]``, ``[synapse]``,
``[capacitor]``, ``[converters]``, ``[program]``); any field left out keeps its default.
Command-line overrides are applied on top with :func:`apply_overrides`. Every value is
checked in :meth:`TrainConfig.validate`, and an error names the field to fix.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from hil.core.errors import ConfigError
from hil.core.textfiles import read_user_toml
from hil.core.validation import FieldError, check_fields, setting
from hil.nn.capacitor_presets import capacitor_preset
from hil.nn.cells import CELL_KINDS
from hil.nn.chipview import MAC_MODELS
from hil.nn.periphery import CAPACITOR_PRESETS, CapacitorConfig, ConverterConfig
from hil.runfile.codec import CODEC_NAMES, DEFAULT_CODEC
from hil.station.model import SourceLines

UPDATE_MODES = ("stochastic", "expected")
RESIDUAL_MODES = ("charge", "reinit", "paper")


@dataclass(frozen=True)
class SynapseConfig:
    """The unit cell W = F·(G+ − G−) + p·(g − g_shared) and its transfer rule."""

    gain_F: float = setting(3.0, gt=0)
    """Gain of the more-significant PCM pair [ours: not public; 3 is a sound default,
    pcm-training.md §2; NeuroSim V3 HybridCell uses 4]."""
    weight_scale_uS: float = setting(40.0, gt=0)
    """µS of W per unit of network weight [ours: the prototype of pcm-training.md §6]."""
    transfer_offset_uS: float = setting(2.0, ge=0)
    """Offset subtracted from W before programming the PCM pair, toward the side g can
    correct easily [paper: 2 µS, ED Fig. 9]."""
    residual: str = setting("charge", choices=RESIDUAL_MODES)
    """After programming the pair: 'charge' g with the measured residual W − F·(G+ − G−)
    (reading (b) of pcm-training.md §6, which the prototype measured best), 'reinit'
    V_C to 0.5 V and let training absorb the offset (reading (a)), or 'paper': both
    capacitors to 0.5 V and the pair programmed with W_transfer = W − p·offset −
    p·[g(0.5 V) − g_shared(0.5 V)], both devices RESET where 0 < p·W_transfer < offset
    [paper: ED Fig. 9 caption; the polarity p of the next interval ours]."""
    polarity_inversion: bool = True
    """Flip p at every transfer so each cell's up/down asymmetry cancels over two
    intervals [paper; IBM patent US 11,074,499]."""
    g_max_target_uS: float = setting(16.0, gt=0)
    """Largest conductance a transfer asks of one PCM device; larger |W| saturates
    [ours: below the ~20 µS of ED Fig. 7 and below the emulator's G_max spread]."""
    refresh_fraction: float = setting(0.75, gt=0, le=1)
    """2PCM baseline: refresh a pair when G+ or G− passes this fraction of
    ``partial_set_saturation_uS`` [lit: Burr et al. 2015; aihwkit OneSidedUnitCell, 0.75]."""
    partial_set_saturation_uS: float = setting(10.5, gt=0)
    """2PCM baseline: conductance where identical partial-SET pulses stop raising G on
    average [lit: Nandakumar et al. 2018 model, µ(G) = 0 at G ≈ 10.5 µS]."""
    refresh_every_images: int = setting(256, ge=1)
    """2PCM baseline: pairs past the threshold are refreshed together every this many
    images ("occasional refresh") [ours]."""
    update_mode: str = setting("stochastic", choices=UPDATE_MODES)
    """'stochastic': pulse-count coincidences of stochastic pulse trains encoding x and δ
    [paper; Burr et al., IEEE TED 2015]; 'expected': the deterministic expected count."""
    pulse_train_length: int = setting(10, ge=1)
    """Slots per update pulse train (BL) [ours]."""

    def __post_init__(self) -> None:
        check_fields(self, "synapse")


@dataclass(frozen=True)
class LogConfig:
    """How the run file stores the pulse log (TOML table ``[log]``)."""

    codec: str = setting(DEFAULT_CODEC, choices=CODEC_NAMES)
    """'deflate': HDF5's standard shuffle + deflate + Fletcher32 filters, which every HDF5
    tool reads (h5dump, PyTables, MATLAB, HDFView); 'blosc2': faster to write and query, but
    readers need the hdf5plugin filter (see :mod:`hil.runfile.codec`)."""

    def __post_init__(self) -> None:
        check_fields(self, "log")


@dataclass(frozen=True)
class TrainConfig:
    """One training run."""

    cell: str = "2pcm3t1c"
    """Unit cell: '2pcm3t1c' (Ambrogio 2018), '2pcm' (PCM-only baseline) or 'fp'."""
    dataset: str = "mnist"
    """'mnist', 'mnist-backrand', or a user's files: 'idx:FOLDER' (MNIST's four IDX files,
    any image size and classes), 'npz:FILE' (x_train, y_train, x_test, y_test; see
    :mod:`hil.data.files`), 'cifar10:PATH' or 'cifar100:PATH' (:mod:`hil.data.cifar`)."""
    layers: tuple[int, ...] = (784, 250, 125, 10)
    """Neurons per layer, input first; bias inputs are added [ours: pcm-training.md §3]."""
    epochs: int = setting(20, ge=1)
    """Passes over the training images [paper: MNIST simulated for 20 epochs, ED Fig. 2]."""
    train_images: int = setting(0, ge=0)
    """Use only the first N training images (0 = all)."""
    test_images: int = setting(0, ge=0)
    """Evaluate on the first N test images (0 = all)."""
    learning_rate: float = setting(0.01, gt=0)
    """Per-image SGD step η [ours: pcm-training.md §6 prototype]."""
    lr_decay: float = setting(0.8, gt=0, le=1)
    """η is multiplied by this after every epoch [ours]."""
    transfer_interval: int = setting(8000, ge=1)
    """Training images between transfers [paper: 8,000 for MNIST, ED Fig. 2]."""
    image_time_s: float = setting(1e-3, ge=0)
    """Simulated time per training image: leakage and drift follow it [ours]."""
    leak_update_images: int = setting(64, ge=1)
    """Apply capacitor leakage every this many images (its effect over one such period is
    < 10^-3 of the leak toward 0.8 V at the default time constant) [ours]."""
    seed: int = setting(0, ge=0)
    """Seeds weights, data order, pulse trains and the emulator."""
    backend: str = "emulator"
    """Device backend spec, e.g. 'emulator' or 'emulator:joshi2020'."""
    data_dir: str = ""
    """Folder holding MNIST ('' = $HIL_DATA_DIR, then the user cache)."""
    mac_model: str = setting("device", choices=MAC_MODELS)
    """What the forward and backward MACs compute with: 'device' — each device as it is
    at that moment, drift and slow read noise included, plus a fresh read noise per MAC,
    where the backend can say it (the emulator; :mod:`hil.nn.chipview`) [paper: the passes
    run on the array]; 'last_read' — the conductances last read, as a station run always
    does (real devices tell only when read)."""
    mac_refresh_images: int = setting(1024, ge=1)
    """With ``mac_model = "device"``: take what the devices present every this many
    images (and after every programming). Drift is slow: with ν ≤ 0.1 and t − t_p ≥ t0 =
    20 s [Joshi 2020] a conductance changes by ν·Δt/(t − t_p) ≤ 0.5 % over 1,024 images at
    1 ms each; every 64 images cost 14 % of the training time (py-spy) [ours]."""
    emulator: dict[str, Any] = field(default_factory=dict, hash=False)
    """Device-model fields that override the emulator preset of ``backend`` (TOML table
    ``[emulator]``, e.g. ``read_noise = "gaussian"``; the names and their sources:
    :class:`sim_backends.emulator.params.PCMParams`); only for emulator backends."""
    log_pulses: bool = True
    """Record every PCM pulse in the run file."""
    synapse: SynapseConfig = field(default_factory=SynapseConfig)
    capacitor: CapacitorConfig = field(default_factory=CapacitorConfig)
    converters: ConverterConfig = field(default_factory=ConverterConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        check_fields(self, "")

    def validate(self, n_inputs: int | None = None, n_classes: int | None = None) -> TrainConfig:
        """``self`` if every field is valid (and the layers fit the data's ``n_inputs`` and
        ``n_classes``), else :class:`ConfigError` naming the field."""
        if self.cell not in CELL_KINDS:
            _bad("cell", f"unknown cell {self.cell!r}; choose one of {', '.join(CELL_KINDS)}")
        _check_layers(self.layers, n_inputs, n_classes)
        if not isinstance(self.emulator, dict):
            _bad("emulator", f"must be a table of device-model fields, got {self.emulator!r}")
        return self

    # -- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["layers"] = list(self.layers)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=_json_default)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        nested = {
            "synapse": SynapseConfig,
            "capacitor": CapacitorConfig,
            "converters": ConverterConfig,
            "log": LogConfig,
        }
        kwargs = {}
        for name, sub in nested.items():
            if name in d:
                values = d.pop(name)
                kwargs[name] = _build(sub, values, name, base=_preset_of(name, values))
        if "train" in d:  # TOML layout: [train] holds the top-level fields
            d.update(d.pop("train"))
        top = _build(cls, d, "", partial=True)
        return dataclasses.replace(top, **kwargs)

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        text, data = read_user_toml(path, "config file")
        try:
            return cls.from_dict(data)
        except FieldError as exc:
            raise ConfigError(f"{path}:{_line_of(text, exc.field)}: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_run_file(cls, text: str, source: str | Path) -> TrainConfig:
        """The configuration run file ``source`` stored as ``config_text``, checked as a
        TOML file is: damage gives a :class:`ConfigError` naming the file, not a traceback."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError(f"a JSON {type(data).__name__}, not an object")
            return cls.from_dict(_as_written(data))
        except (ValueError, TypeError, FieldError) as exc:
            raise ConfigError(
                f"{source}: the run's stored configuration (config_text) is damaged ({exc}); "
                "the run cannot be replayed or resumed"
            ) from None


LEGACY_EMULATOR = {"set_history_before_step": False, "read_nonnegative": False}
"""What a run file written before issue 14's device model meant by its emulator: the
partial-SET history decayed after the step, reads not floored at 0 (the preset as named)."""


def _as_written(data: dict[str, Any]) -> dict[str, Any]:
    """A stored configuration with what its fields meant when it was written: one from
    before issue 14 (no ``mac_model``) trained with MACs on the last reads, and its
    ``emulator`` backend was the ``nandakumar2018`` preset with :data:`LEGACY_EMULATOR`,
    so it replays and resumes as it ran."""
    if "mac_model" in data:
        return data
    data = {**data, "mac_model": "last_read"}
    kind, _, preset = str(data.get("backend", "emulator")).partition(":")
    if kind == "emulator":
        data["backend"] = f"emulator:{preset or 'nandakumar2018'}"
        data["emulator"] = dict(LEGACY_EMULATOR)
    return data


def _bad(name: str, why: str) -> NoReturn:
    raise ConfigError(f"config field '{name}': {why}")


def _check_layers(layers, n_inputs: int | None, n_classes: int | None) -> None:
    if len(layers) < 2 or any(int(n) != n or n < 1 for n in layers):
        _bad("layers", f"needs >= 2 positive integers, got {list(layers)}")
    if n_inputs is not None and layers[0] != n_inputs:
        _bad(
            "layers",
            f"the first layer has {layers[0]} neurons but the data has {n_inputs} inputs per image",
        )
    if n_classes is not None and layers[-1] != n_classes:
        _bad(
            "layers",
            f"the last layer has {layers[-1]} neurons but the data has {n_classes} classes",
        )


def _line_of(text: str, dotted: str) -> int | str:
    """Line of the TOML key ``dotted`` (``synapse.gain_F``; top-level fields in ``[train]``)."""
    table, _, key = dotted.rpartition(".")
    lines = SourceLines(text)
    return lines.of(table or "train", key) or lines.of("", key) or "?"


def _json_default(v):
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    raise TypeError(type(v))


def _preset_of(section: str, values: Any) -> Any:
    """The preset a ``[capacitor]`` table names, to build its other fields on (else None;
    an unknown name is left to the field check, which names the choices and the line)."""
    if section != "capacitor" or not isinstance(values, dict):
        return None
    name = values.get("preset", CAPACITOR_PRESETS[0])
    return capacitor_preset(name) if name in CAPACITOR_PRESETS else None


def _build(cls, values: dict[str, Any], prefix: str, partial: bool = False, base: Any = None):
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{prefix}' must be a table")
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        where = f"{prefix}.{key}" if prefix else key
        if key not in known:
            raise ConfigError(
                f"config field '{where}' is unknown; known fields: {', '.join(sorted(known))}"
            )
        if key == "layers":
            value = tuple(value) if isinstance(value, list | tuple) else value
        if value == "inf":
            value = math.inf
        kwargs[key] = value
    try:
        return cls(**kwargs) if base is None else dataclasses.replace(base, **kwargs)
    except FieldError:
        raise
    except ConfigError as exc:
        raise ConfigError(f"config section '{prefix or 'train'}': {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"config section '{prefix or 'train'}': {exc}") from None


def apply_overrides(cfg: TrainConfig, **overrides) -> TrainConfig:
    """``cfg`` with the non-None top-level ``overrides`` (``synapse__x`` for nested).

    ``capacitor__preset`` starts the capacitor from that preset (its other fields from
    ``cfg`` are dropped), then applies the other ``capacitor__`` overrides."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        if "__" in key:
            section, name = key.split("__", 1)
            nested.setdefault(section, {})[name] = value
        else:
            top[key] = value
    for section, values in nested.items():
        if section == "capacitor" and "preset" in values:
            top[section] = capacitor_preset(values.pop("preset"), **values)
        else:
            top[section] = dataclasses.replace(getattr(cfg, section), **values)
    return dataclasses.replace(cfg, **top)
