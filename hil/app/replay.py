"""`hil replay`: re-run a logged experiment against its own device responses and compare.

The stored configuration is trained again with a :class:`~sim_backends.replay.ReplayBackend`
serving the original run's pulse log. If the code and configuration are unchanged the new
run is identical pulse for pulse and weight for weight; otherwise the first pulse that
differs stops it with a :class:`~sim_backends.replay.DivergenceError` — or, given a
``fallback`` backend factory, hands the devices over to that backend there and trains on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hil.app.registry import is_exclusive
from hil.app.registry import make_backend as make_recorded_backend
from hil.app.replay_shadow import ShadowedReplay
from hil.app.station_runs import StationReplay, lost_read_keys, recorded_station
from hil.app.training import Trainer
from hil.core.backend import DeviceBackend
from hil.core.capabilities import Adopting, PresentsConductance
from hil.core.errors import ConfigError
from hil.data import get_dataset
from hil.devicemodel.model import FittedModel
from hil.fit import fit_log
from hil.nn.cells import cell_kind
from hil.nn.config import TrainConfig
from hil.nn.network import n_devices_for
from hil.runfile import checkpoint
from hil.runfile.container import open_run_file, read_root_attrs
from hil.runfile.lock import check_not_input, output_file
from hil.runfile.reader import PulseLogReader
from hil.runfile.schema import COLUMN_NAMES
from sim_backends.fitted import FittedBackend
from sim_backends.replay import ReplayBackend

_CHUNK = 1 << 20


def _with_shadow(replay: ReplayBackend, cfg: TrainConfig, spec: str, n: int, seed: int):
    """``replay``, shadowed by the run's own emulator when the run's MACs saw what the
    devices presented (:mod:`hil.app.replay_shadow`)."""
    if cfg.mac_model != "device" or is_exclusive(spec):
        return replay
    shadow = make_recorded_backend(spec, n, seed, emulator=cfg.emulator)
    if not isinstance(shadow, PresentsConductance):
        shadow.close()
        return replay
    return ShadowedReplay(replay, shadow)


def _same_state(original: Mapping[str, np.ndarray], replayed: Mapping[str, np.ndarray]) -> bool:
    """Every state array the original stored is in the replay, equal; a run file from an
    older release lacks what later releases added to the cells' state (the MACs' view)."""
    return original.keys() <= replayed.keys() and all(
        np.array_equal(original[k], replayed[k]) for k in original
    )


def _compare_logs(a_path, b_path, per_device: bool) -> dict:
    with PulseLogReader(a_path) as a, PulseLogReader(b_path) as b:
        if a.n_records != b.n_records:
            return {"equal": False, "records": [a.n_records, b.n_records]}
        if per_device:
            return _compare_per_device(a, b)
        for start in range(0, a.n_records, _CHUNK):
            stop = min(start + _CHUNK, a.n_records)
            for name in COLUMN_NAMES:
                x, y = a.column(name, start, stop), b.column(name, start, stop)
                same = (x == y) | (np.isnan(x) & np.isnan(y)) if x.dtype.kind == "f" else x == y
                if not np.all(same):
                    k = start + int(np.flatnonzero(~same)[0])
                    return {"equal": False, "first_difference": {"record": k, "column": name}}
        return {"equal": True, "records": a.n_records}


def _compare_per_device(a: PulseLogReader, b: PulseLogReader) -> dict:
    """Each device's records in order, every column but ``time_s``: a station visits devices
    in its own order (die by die, RESETs deferred to the next visit) on its wall clock, so
    only the pulses each device received, and what they measured, can repeat."""
    order_a = np.argsort(a.column("device"), kind="stable")
    order_b = np.argsort(b.column("device"), kind="stable")
    for name in COLUMN_NAMES:
        if name == "time_s":
            continue
        x, y = a.column(name)[order_a], b.column(name)[order_b]
        same = (x == y) | (np.isnan(x) & np.isnan(y)) if x.dtype.kind == "f" else x == y
        if not np.all(same):
            k = int(order_a[np.flatnonzero(~same)[0]])
            return {"equal": False, "first_difference": {"record": k, "column": name}}
    return {"equal": True, "records": a.n_records, "compared": "per device, without time_s"}


def replay(
    run_file, out, *, data_dir=None, progress=False, overrides=None, fallback=None, force=False
) -> dict:
    """Re-run ``run_file``'s configuration (with ``overrides``, for experiments) on its log.

    ``fallback``: optional factory ``fallback(n_devices, seed) -> backend`` (a backend that
    is :class:`~hil.core.capabilities.Adopting`, e.g. a fitted model of the devices). At the
    first divergence the replay continues on it instead of raising; the report's
    ``fallback`` entry then gives the divergence. ``out`` is written under a temporary name
    and appears only once complete; an existing ``out`` is replaced only with ``force``.
    """
    run_file, out = Path(run_file), Path(out)
    check_not_input(out, [run_file])
    with open_run_file(run_file) as f:
        cfg = TrainConfig.from_run_file(read_root_attrs(f)["config_text"], run_file)
        original = checkpoint.read_summary(f)
        weights_a = checkpoint.latest(f)[0].cells
        attrs = dict(f.attrs)
    if not cell_kind(cfg.cell).uses_devices:
        raise ConfigError(f"{run_file} is a floating-point run: it sent no pulses to replay")
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    data = get_dataset(cfg.dataset, data_dir or cfg.data_dir or None)
    backends: list[ReplayBackend] = []

    # A station run: its station's placement, timing grid and [read], from the run file.
    station_block = recorded_station(run_file, attrs, cfg, n_devices_for(cfg.layers))

    def make_backend(spec, n, seed):
        backends.append(ReplayBackend(run_file, n_devices=n, fallback=_adopting(fallback, n, seed)))
        if station_block is None:
            return _with_shadow(backends[-1], cfg, spec, n, seed)
        return StationReplay(backends[-1], station_block, lost_read_keys(run_file, n))

    with output_file(out, force=force, inputs=[run_file]) as tmp:
        trainer = Trainer(cfg, data, tmp, progress=progress, backend_factory=make_backend)
        summary = trainer.run()
        with open_run_file(tmp) as f:
            weights_b = checkpoint.latest(f)[0].cells
        pulses = _compare_logs(run_file, tmp, per_device=station_block is not None)
    weights_equal = _same_state(weights_a, weights_b)
    same_acc = original is not None and original["test_accuracy"] == summary["test_accuracy"]
    report = {
        "run_file": str(run_file),
        "replay_file": str(out),
        "identical": bool(pulses["equal"] and weights_equal and same_acc),
        "pulses": pulses,
        "weights_equal": bool(weights_equal),
        "test_accuracy": {
            "original": original and original["test_accuracy"],
            "replay": summary["test_accuracy"],
        },
    }
    if fallback is not None:
        divergence = next((b.divergence for b in backends if b.divergence), None)
        report["fallback"] = {"used": divergence is not None, "divergence": divergence}
    return report


def _adopting(fallback, n_devices: int, seed: int) -> DeviceBackend | None:
    """The fallback backend the factory makes, checked before the replay needs it."""
    if fallback is None:
        return None
    backend = fallback(n_devices, seed)
    if not isinstance(backend, DeviceBackend) or not isinstance(backend, Adopting):
        raise ConfigError(
            f"replay fallback {type(backend).__name__} cannot take devices over from the log: "
            "it needs the DeviceBackend methods and adopt(ids, g_S), like FittedBackend"
        )
    return backend


def fitted_fallback(spec: str, run_file, out, force: bool = False):
    """The ``--fallback`` factory: ``fitted`` (fit ``run_file``'s own log, saved next to
    ``out`` as OUT.fitted.h5, under the same rules as every output: locked, ``force`` to
    replace it) or ``fitted:MODEL.h5``."""
    kind, _, arg = spec.partition(":")
    if kind != "fitted":
        raise ConfigError(f"--fallback {spec!r}: use 'fitted' or 'fitted:MODEL.h5'")
    if arg:
        model = FittedModel.load(arg)
    else:
        if Path(out).exists() and not force:  # refused before any model file is written
            raise ConfigError(f"{str(out)!r} exists; pass --force to overwrite it")
        model = fit_log(run_file)
        inputs = [run_file, out]
        with output_file(Path(out).with_suffix(".fitted.h5"), force=force, inputs=inputs) as tmp:
            model.save(tmp)
    return lambda n, seed: FittedBackend(model, n, seed=seed)
