"""``hil evaluate``: the test accuracy of a finished run's network at times after training.

The network is the one the run ended with, from its last checkpoint: the cells' state
(conductances read at the last transfer, capacitor voltages, polarity) and the backend's
device snapshot (programmed G, programming times, drift exponents, random streams). At
each time T after the end of training the devices are read once, as a chip reads them to
run inference (drift and read noise from the device model), the weights are rebuilt as the
cell defines them, W = F·(G+ − G−) + p·(g − g_shared), and the test set goes through the
network's analog forward path (DAC, ADC) as in training.

Where the devices come from (:func:`_start_devices`):

- the run's own backend (the default, or ``--backend`` naming it): its checkpoint snapshot
  is restored, so T counts from the end of training and each device has its real age;
- another backend that can take devices over (``fitted:MODEL.h5``, :class:`Adopting`):
  each device is put at the conductance the last transfer read and aged by the time since
  that transfer (every device taken as programmed then [ours]);
- another emulator preset: the snapshot is restored into it if it fits;
- the run's probe station (a ``station:`` run, :func:`hil.app.registry.is_exclusive`): the
  real devices are as they are now, T counts from the start of the evaluation, the
  emulated layers are restored; the wait is real, so the projected duration is shown and
  the evaluation refused without ``yes``.

Repeats: on a backend whose devices all live in a snapshot, each repeat restores the start
with fresh random streams (:func:`hil.core.rng.rekeyed_snapshot`, keyed by the seed and the
repeat) and walks all times: independent futures of the same devices. A station's devices
cannot be put back, so there one walk reads every device ``repeats`` times at each T.

The capacitors (``capacitors``): ``leak`` (default) lets the 3T1C cells evolve by their own
model for T (:meth:`hil.nn.periphery.CapacitorArray.leak`: V_C relaxes toward
``v_leak_V`` with ``leak_tau_s``; cells and column references leak alike, so only their
mismatch remains of p·(g − g_shared) once T ≫ ``leak_tau_s``) [ours: the physics the
training used]; ``hold`` keeps them as training left them, to isolate PCM drift.

Global drift compensation (``compensation="global"``, :mod:`hil.nn.compensation`, after
aihwkit's ``GlobalDriftCompensation``): each walk reads the devices once right at its
start (the baseline), and at each T scales every layer's ADC output by baseline/now.

The evaluation's reads are not logged to the run's pulse log (it stays what training sent,
so ``hil replay`` still compares equal); the results go to ``/evaluation/<name>``
(:mod:`hil.runfile.evaluation`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hil.app.evaluate_run import FinishedRun, load_finished_run, store_result, with_statistics
from hil.app.registry import is_exclusive, make_backend
from hil.app.station_runs import layer_devices
from hil.app.station_time import evaluation_work
from hil.app.training import backend_seed, build_network
from hil.core.backend import DeviceBackend
from hil.core.capabilities import Adopting, Composed, Snapshotting, StationBacked
from hil.core.errors import ConfigError
from hil.core.events import reported_conductance
from hil.core.rng import rekeyed_snapshot
from hil.data import get_dataset
from hil.nn import compensation
from hil.nn.network import Network, n_devices_for
from hil.runfile.lock import WriterLock
from hil.station.parser import load_station
from instruments.connect import measure_visit_times

logger = logging.getLogger(__name__)

COMPENSATIONS = ("none", "global")
CAPACITOR_MODES = ("leak", "hold")
_REKEY = 0x45564C
"""Purpose tag of the evaluation's random streams (keeps them apart from training's)."""
_POLL_S = 0.5
"""Longest single wait on a station: the clock is polled this often, and a long wait is
reported as it goes."""


@dataclass(frozen=True)
class EvaluateOptions:
    """One ``hil evaluate``."""

    times_s: tuple[float, ...]
    """Times after the end of training (s), ascending, each once."""
    repeats: int = 5
    """Independent reads (walks) per time; mean ± std over them [ours]."""
    compensation: str = "none"
    """'global': also evaluate with global drift compensation (:mod:`hil.nn.compensation`)."""
    capacitors: str = "leak"
    """'leak': the 3T1C cells leak for T by their model; 'hold': kept as training left them."""
    backend: str = ""
    """Backend spec to evaluate on ('' = the run's own)."""
    test_images: int = 0
    """Evaluate on the first N test images (0 = as many as the run did)."""
    seed: int | None = None
    """Seed of the evaluation's random streams (None = the run's seed)."""
    name: str = ""
    """Name of the group ``/evaluation/<name>`` ('' = the UTC time)."""
    force: bool = False
    """Replace an evaluation of the same ``name``."""
    yes: bool = False
    """Run on a probe station (its wait is real)."""
    data_dir: str = ""
    """Folder of the data set ('' = the run's, then $HIL_DATA_DIR)."""

    def __post_init__(self) -> None:
        if not self.times_s or any(not (np.isfinite(t) and t >= 0) for t in self.times_s):
            raise ConfigError(f"--after: times must be finite and >= 0, got {self.times_s}")
        if list(self.times_s) != sorted(set(self.times_s)):
            raise ConfigError(f"--after: times must ascend without repeats: {self.times_s}")
        if isinstance(self.repeats, bool) or int(self.repeats) != self.repeats or self.repeats < 1:
            raise ConfigError(f"--repeats must be an integer >= 1, got {self.repeats!r}")
        if self.compensation not in COMPENSATIONS:
            raise ConfigError(
                f"--drift-compensation {self.compensation!r}: use one of {', '.join(COMPENSATIONS)}"
            )
        if self.capacitors not in CAPACITOR_MODES:
            raise ConfigError(
                f"--capacitors {self.capacitors!r}: use one of {', '.join(CAPACITOR_MODES)}"
            )
        if self.test_images < 0:
            raise ConfigError(f"--test-images must be >= 0, got {self.test_images}")


def evaluate(run_file, options: EvaluateOptions, *, backend_factory=None, progress=False) -> dict:
    """Evaluate ``run_file``'s final network at ``options.times_s``; store and return the
    result (a JSON-able dict, the arrays as lists).

    ``backend_factory(spec, n_devices, seed)``: makes the backend instead of the registry
    (tests); ``progress``: a progress bar on stderr.
    """
    run_file = Path(run_file)
    with WriterLock(run_file):
        run = load_finished_run(run_file)
        spec = options.backend or run.cfg.backend
        on_station = is_exclusive(spec)
        if on_station:
            _confirm_station(run, spec, options)
        x, y = _test_set(run, options)
        seed = run.cfg.seed if options.seed is None else int(options.seed)
        backend = _make_backend(run, spec, backend_factory)
        try:
            net = build_network(run.cfg, backend)
            start = _start_devices(run, spec, backend)
            walker = _Walker(net, backend, run, options, x, y)
            result = walker.walk_all(start, seed, progress)
        finally:
            backend.close()
        result = with_statistics(
            result | _describe(run, options, spec, seed, x.shape[0], on_station)
        )
        result["name"] = store_result(run_file, result, options)
    logger.info("evaluation %r stored in %s", result["name"], run_file)
    return _jsonable(result)


# -- setting up --------------------------------------------------------------------------------
def _confirm_station(run: FinishedRun, spec: str, options: EvaluateOptions) -> None:
    """On a station: its own run only; project the duration, refuse it without ``yes``."""
    if spec != run.cfg.backend:
        raise ConfigError(
            f"{run.path} was trained on {run.cfg.backend!r}; a station can evaluate only its "
            "own run's devices (evaluate on that station, or on fitted:MODEL.h5)"
        )
    station = load_station(spec.partition(":")[2])
    passes = (options.compensation != "none") + len(options.times_s) * options.repeats
    work = evaluation_work(run.cfg, station, passes, max(options.times_s))
    projected = work.describe(measure_visit_times(station))
    if not options.yes:
        raise ConfigError(
            f"evaluating {run.path} on station {station.name!r} really waits and reads its "
            f"devices: projected {projected}; pass --yes to run it (or choose shorter --after)"
        )
    logger.warning("evaluation on station %r: projected %s", station.name, projected)


def _test_set(run: FinishedRun, options: EvaluateOptions) -> tuple[np.ndarray, np.ndarray]:
    cfg = run.cfg
    data = get_dataset(cfg.dataset, options.data_dir or cfg.data_dir or None)
    have = data.test_images.shape[0]
    n = options.test_images or cfg.test_images or have
    if n > have:
        raise ConfigError(f"--test-images {n}: the data set has {have} test images")
    return data.float_images("test", n), data.test_labels[:n]


def _make_backend(run: FinishedRun, spec: str, factory) -> DeviceBackend:
    n = n_devices_for(run.cfg.layers)
    seed = backend_seed(run.cfg.seed)
    if factory is not None:
        return factory(spec, n, seed)
    return make_backend(spec, n, seed=seed, layer_devices=layer_devices(run.cfg.layers))


def _start_devices(run: FinishedRun, spec: str, backend: DeviceBackend) -> dict | None:
    """Put the devices where the run ended; returns the snapshot each walk restores (None:
    the devices cannot be put back, a station's)."""
    if not isinstance(backend, Snapshotting):
        return None
    if spec != run.cfg.backend and isinstance(backend, Adopting):
        backend.adopt(np.arange(backend.n_devices), run.last_read_S)
        backend.wait(run.age_s)
    else:
        try:
            backend.restore(dict(run.state.backend))
        except ConfigError as exc:
            raise ConfigError(
                f"{run.path} (trained on {run.cfg.backend!r}) cannot be evaluated on "
                f"{spec!r}: {exc}; evaluate on the run's own backend or on fitted:MODEL.h5"
            ) from None
    return None if _has_station(backend) else backend.snapshot()


def _has_station(backend: DeviceBackend) -> bool:
    parts = backend.parts if isinstance(backend, Composed) else [backend]
    return any(isinstance(p, StationBacked) for p in parts)


# -- the walks ---------------------------------------------------------------------------------
class _Walker:
    """Walks the devices through the times: reads, rebuilds the weights, evaluates."""

    def __init__(self, net: Network, backend, run: FinishedRun, options, x, y):
        self.net, self.backend, self.run, self.opt = net, backend, run, options
        self.x, self.y = net.prepare_inputs(x), y
        self.ids = np.arange(backend.n_devices)
        self.poll_s = _POLL_S if _has_station(backend) else None
        self.compensate = options.compensation == "global"
        n_t, k, n_l = len(options.times_s), options.repeats, len(net.weights)
        self.acc = np.full((n_t, k), np.nan)
        self.acc_comp = np.full((n_t, k), np.nan)
        self.alpha = np.full((n_t, k, n_l), np.nan)
        self.readout = np.full((n_t, k, n_l), np.nan)
        self.baseline = np.full((k, n_l), np.nan)
        self.elapsed = np.full((n_t, k), np.nan)
        self.lost_reads = 0

    def walk_all(self, start: dict | None, seed: int, progress: bool) -> dict:
        k = self.opt.repeats
        steps = len(self.opt.times_s) * k
        with tqdm(total=steps, desc="evaluate", unit="read", disable=not progress) as bar:
            if start is None:  # a station: one walk, k reads at each time
                self._walk(range(k), bar)
            else:
                for r in range(k):
                    self.backend.restore(rekeyed_snapshot(start, (seed, _REKEY, r)))
                    self._walk([r], bar)
        out = {
            "times_s": np.asarray(self.opt.times_s, dtype=np.float64),
            "accuracy": self.acc,
            "elapsed_s": self.elapsed,
            "lost_reads": self.lost_reads,
        }
        if self.compensate:
            out |= {
                "accuracy_compensated": self.acc_comp,
                "alpha": self.alpha,
                "readout": self.readout,
                "readout_baseline": self.baseline,
            }
        return out

    def _walk(self, repeats, bar) -> None:
        """From the start state: the baseline read, then each time in turn."""
        cells, backend = self.net.cells, self.backend
        cells.load_state(dict(self.run.state.cells))
        t0 = backend.clock()
        base = np.ones(len(self.net.weights))
        if self.compensate:
            self._read()
            base = compensation.readout(self.net.weights)
            for r in repeats:
                self.baseline[r] = base
        before = 0.0
        for i, t in enumerate(self.opt.times_s):
            _wait_until(backend, t0 + t, self.poll_s)
            if self.opt.capacitors == "leak":
                cells.elapse(t - before)
            before = t
            for r in repeats:
                self._read()
                self.elapsed[i, r] = backend.clock() - t0
                self._score(i, r, base)
                bar.update(1)
            logger.info(
                "after %g s: accuracy %.4f%s",
                t,
                float(np.nanmean(self.acc[i])),
                f", compensated {np.nanmean(self.acc_comp[i]):.4f}" if self.compensate else "",
            )

    def _read(self) -> None:
        """Every device once, at the run file's precision; a lost read (NaN, a station's
        reply that never came) keeps the last transfer's value."""
        g = reported_conductance(self.backend.read(self.ids))
        lost = np.isnan(g)
        if lost.any():
            self.lost_reads += int(lost.sum())
            g[lost] = self.run.last_read_S[lost]
        self.net.cells.load_reads(g)

    def _score(self, i: int, r: int, base: np.ndarray) -> None:
        self.acc[i, r] = self.net.accuracy(self.x, self.y)
        if self.compensate:
            now = compensation.readout(self.net.weights)
            a = compensation.alpha(base, now)
            self.readout[i, r], self.alpha[i, r] = now, a
            self.acc_comp[i, r] = self.net.accuracy(self.x, self.y, output_scale=a)


def _wait_until(backend: DeviceBackend, t_s: float, poll_s: float | None) -> None:
    """Wait until the backend's clock reads ``t_s``; in steps of ``poll_s`` if given."""
    while (remaining := t_s - backend.clock()) > 0:
        before = backend.clock()
        backend.wait(remaining if poll_s is None else min(remaining, poll_s))
        if backend.clock() <= before:  # below the clock's resolution: there
            return


# -- the result --------------------------------------------------------------------------------
def _describe(run, options: EvaluateOptions, spec: str, seed: int, n_test: int, station) -> dict:
    return {
        "run_file": str(run.path),
        "backend": spec,
        "seed": seed,
        "repeats": options.repeats,
        "test_images": n_test,
        "compensation": options.compensation,
        "capacitors": options.capacitors,
        "walks": "one walk, repeated reads at each time" if station else "independent walks",
        "run_test_accuracy": run.final_test_accuracy,
        "run_test_images": run.cfg.test_images,
        "config_json": json.dumps({**asdict(options), "run_config": run.cfg.to_dict()}),
    }


def _jsonable(result: dict) -> dict:
    out = {}
    for key, value in result.items():
        if isinstance(value, np.ndarray):
            cells = value.astype(object)
            cells[np.isnan(value)] = None  # JSON has no NaN
            out[key] = cells.tolist()
        else:
            out[key] = value
    return out
