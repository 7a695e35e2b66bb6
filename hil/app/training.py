"""The training loop: epochs, transfers, evaluation, checkpoints, resume.

One run writes one HDF5 run file: configuration and seed (root attributes), the device
table, every PCM pulse (through :class:`~hil.runfile.recorder.Recorder`, with the training
context), and checkpoints at every transfer and epoch end (:mod:`hil.runfile.checkpoint`). A run
killed at any point resumes from its newest checkpoint: the pulse log is cut back to what
the checkpoint had seen, and the rest replays exactly — the same seed gives the same run
bit for bit.

Random streams are split by purpose from the seed (``SeedSequence``): the network's (weight
initialisation, capacitor mismatch, pulse trains), the data order of each epoch, and the
emulator's. Only the network's and the emulator's states travel in checkpoints.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from hil.app.progress import Progress, browsable_summary, check_resume_meta
from hil.app.registry import make_backend
from hil.app.station_runs import StationBlock, layer_devices
from hil.core.backend import DeviceBackend
from hil.core.capabilities import Composed, Deferring, Snapshotting, StationBacked
from hil.core.errors import ConfigError, LogError
from hil.core.pulses import Operation
from hil.core.rng import RandomPool
from hil.data import Dataset
from hil.nn.cells import cell_kind
from hil.nn.config import TrainConfig
from hil.nn.network import Network, n_devices_for
from hil.runfile import checkpoint
from hil.runfile.checkpoint import CheckpointState
from hil.runfile.container import open_run_file, read_root_attrs, write_summary
from hil.runfile.recorder import Recorder
from hil.runfile.schema import SCHEMA_VERSION, Phase
from hil.runfile.writer import PulseLogWriter
from hil.station.model import Station
from instruments.hardware import HardwareBackend

logger = logging.getLogger(__name__)

BackendFactory = Callable[[str, int, int], DeviceBackend]


def _rng_for(seed: int, purpose: int, *more: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, purpose, *more]))


_NET, _ORDER, _BACKEND, _PULSES = 1, 2, 3, 4


def backend_seed(seed: int) -> int:
    """The emulator's seed, derived from the run's seed."""
    return int(np.random.SeedSequence([seed, _BACKEND]).generate_state(1)[0])


def build_network(
    cfg: TrainConfig, backend: DeviceBackend | None, pool: RandomPool | None = None
) -> Network:
    """The network of ``cfg`` with the constants its seed draws (initial weights, each
    capacitor's mismatch): what a checkpoint's cell state is loaded into."""
    return Network(cfg, _rng_for(cfg.seed, _NET), backend, pool)


class Trainer:
    """Trains ``cfg`` on ``data`` and writes the run file ``out``."""

    def __init__(
        self,
        cfg: TrainConfig,
        data: Dataset,
        out: str | Path,
        *,
        backend_factory: BackendFactory | None = None,
        progress: bool = True,
        overwrite: bool = False,
    ):
        self.cfg = cfg.validate(n_inputs=data.train_images.shape[1], n_classes=data.n_classes)
        self.out = Path(out)
        self.show_progress = progress
        self.overwrite = overwrite
        self._factory = backend_factory
        n_tr = cfg.train_images or data.train_images.shape[0]
        n_te = cfg.test_images or data.test_images.shape[0]
        if n_tr > data.train_images.shape[0] or n_te > data.test_images.shape[0]:
            raise ConfigError(
                f"config field 'train_images'/'test_images': asks for {n_tr}/{n_te} images, the "
                f"data set has {data.train_images.shape[0]}/{data.test_images.shape[0]}"
            )
        self.x_train = data.float_images("train", n_tr)
        self.y_train = data.train_labels[:n_tr]
        self.x_test = data.float_images("test", n_te)
        self.y_test = data.test_labels[:n_te]
        kill = os.environ.get("HIL_TEST_KILL_AFTER_IMAGES")
        self.kill_after_images: int | None = int(kill) if kill else None
        """Testing aid: the process kills itself (SIGKILL) after this many images, so the
        tests can check resume after a real crash."""
        self._recorder: Recorder | None = None
        """Logs the backend's pulses with the training context (None: not logged)."""
        self._eval_s = 0.0
        """Time spent evaluating the test set, in this process."""
        self._station_line = ""
        """The last transfer's station figures, for the progress bar ('' off a station)."""

    # -- set-up ---------------------------------------------------------------------------
    def _make_backend(self, n_devices: int) -> DeviceBackend:
        if self._factory is not None:
            return self._factory(self.cfg.backend, n_devices, backend_seed(self.cfg.seed))
        return make_backend(
            self.cfg.backend,
            n_devices,
            seed=backend_seed(self.cfg.seed),
            layer_devices=layer_devices(self.cfg.layers),
            emulator=self.cfg.emulator,
        )

    def _build(self) -> tuple[Network, DeviceBackend | None]:
        cfg = self.cfg
        inner = None
        if cell_kind(cfg.cell).uses_devices:
            inner = self._make_backend(n_devices_for(cfg.layers))
        # Pulse-train and noise numbers restart from a new key at every checkpoint, so a
        # checkpoint need only store how many there were.
        self.pool = RandomPool((cfg.seed, _PULSES, 0))
        return build_network(cfg, inner, self.pool), inner

    def _state(self, net: Network, inner: DeviceBackend | None) -> CheckpointState:
        """What a checkpoint stores as arrays: the cells' state, the backend's snapshot."""
        snapshot: dict[str, np.ndarray] = {}
        if isinstance(inner, Snapshotting):
            snapshot = inner.snapshot()
        return CheckpointState(cells=net.cells.state(), backend=snapshot)

    # -- the run --------------------------------------------------------------------------
    def run(self, resume: bool = False) -> dict:
        """Train to the configured number of epochs; returns the summary dict."""
        net, inner = self._build()
        if resume:
            state, meta = self._load_checkpoint()
            writer = PulseLogWriter.reopen(
                self.out, truncate_to=meta["pulse_records"], codec=self.cfg.log.codec
            )
        else:
            writer = self._create_run_file(net, inner)
        if inner is not None and self.cfg.log_pulses:
            self._recorder = Recorder(inner, writer, layer_of_device=net.layout.layer_of_device)
        started = time.perf_counter()
        try:
            if resume:
                prog = self._restore(net, inner, state, meta)
            else:
                prog = self._initialize(net, inner, writer)
            summary = self._train(net, inner, writer, prog, started)
        finally:
            self._close(inner, writer)
        write_summary(self.out, "training", browsable_summary(summary))
        return summary

    def _create_run_file(self, net: Network, inner: DeviceBackend | None) -> PulseLogWriter:
        template = self._state(net, inner)

        def prepare(f: h5py.File) -> None:
            # Datasets must exist before the file enters SWMR mode.
            checkpoint.declare(f, template)
            _store_stations(f, inner)

        return PulseLogWriter.create(
            self.out,
            config_text=self.cfg.to_json(),
            seed=self.cfg.seed,
            overwrite=self.overwrite,
            device_table=self._device_table(net, inner) if inner is not None else None,
            prepare=prepare,
            codec=self.cfg.log.codec,
            attrs={"backend": self.cfg.backend, "dataset": self.cfg.dataset},
        )

    def _device_table(self, net: Network, inner: DeviceBackend) -> dict[str, np.ndarray]:
        """The layout's device table, with die and site of the devices on a station."""
        table = net.layout.device_table()
        for station in _stations(inner):
            if not isinstance(station, Station):
                continue  # a plugin's station files: no device map to read
            block = StationBlock.of(station, inner.n_devices, self.cfg.layers)
            table["die"], table["site"] = block.die_and_site(inner.n_devices)
        return table

    def _initialize(self, net: Network, inner: DeviceBackend | None, writer) -> Progress:
        """The initial weights programmed, and the first checkpoint."""
        prog = Progress()
        with self._context(phase=Phase.TRANSFER, transfer=0, epoch=0):
            init = net.initialize(inner)
            _flush_deferred(inner)
        prog.history.append({"epoch": -1, "init": init})
        self._checkpoint(writer, net, inner, prog)
        return prog

    def _train(self, net: Network, inner, writer, prog: Progress, started: float) -> dict:
        """The epochs still to train, from ``prog``; returns the summary (also stored)."""
        images_before = prog.images_seen
        self._eval_s = 0.0
        loop_started = time.perf_counter()
        self._loop(net, inner, writer, prog)
        train_s = time.perf_counter() - loop_started - self._eval_s
        summary = self._summary(prog, time.perf_counter() - started)
        summary["train_s"] = round(train_s, 3)
        summary["eval_s"] = round(self._eval_s, 3)
        summary["images_per_s"] = round((prog.images_seen - images_before) / train_s, 1)
        checkpoint.write_summary(writer.file, summary)
        return summary

    def _close(self, inner: DeviceBackend | None, writer: PulseLogWriter) -> None:
        self.pool.close()
        try:
            if inner is not None:
                inner.close()  # what a station sends on closing is still logged
        finally:
            if self._recorder is not None:
                self._recorder.close()  # closes the writer
            if not writer.closed:
                writer.close()

    def _context(self, **fields):
        """The log's training context, when pulses are logged."""
        if self._recorder is not None:
            return self._recorder.context(**fields)
        return nullcontext()

    def _loop(self, net: Network, inner, writer, prog: Progress) -> None:
        x_train = net.prepare_inputs(self.x_train)  # the input DAC, once
        bar = self._bar(prog)
        try:
            while prog.epoch < self.cfg.epochs:
                lr = self.cfg.learning_rate * self.cfg.lr_decay**prog.epoch
                with self._context(phase=Phase.TRAIN, epoch=prog.epoch):
                    self._train_epoch(net, inner, writer, prog, x_train, lr, bar)
                self._end_epoch(net, inner, writer, prog, lr, bar)
        finally:
            if bar is not None:
                bar.close()

    def _train_epoch(self, net: Network, inner, writer, prog, x_train, lr: float, bar) -> None:
        """This epoch's images from ``prog.position`` on, in the epoch's order."""
        n = self.x_train.shape[0]
        order = _rng_for(self.cfg.seed, _ORDER, prog.epoch).permutation(n)
        per_image = self._recorder if net.cells.needs_backend_per_image else None
        while prog.position < n:
            img = order[prog.position]
            if per_image is not None:
                per_image.set_context(image=prog.images_seen)
            prog.correct_this_epoch += net.train_image(
                x_train[img], int(self.y_train[img]), lr, prepared=True
            )
            prog.position += 1
            prog.images_seen += 1
            self._after_image(net, inner, writer, prog, bar)

    def _after_image(self, net: Network, inner, writer, prog: Progress, bar) -> None:
        """What falls due after an image: leak, transfer and checkpoint, progress."""
        cfg = self.cfg
        if prog.images_seen % cfg.leak_update_images == 0:
            dt_leak = cfg.leak_update_images * cfg.image_time_s
            net.cells.elapse(dt_leak)
            if inner is not None:
                inner.wait(dt_leak)
        if inner is not None and prog.images_seen % cfg.mac_refresh_images == 0:
            net.cells.sense(inner)  # the MACs see the devices as they now are
        if prog.images_seen % cfg.transfer_interval == 0:
            self._transfer(net, inner, prog)
            self._checkpoint(writer, net, inner, prog)
        if bar is not None and prog.position % 250 == 0:
            self._bar_update(bar, prog, 250)
        if self.kill_after_images == prog.images_seen:
            os.kill(os.getpid(), signal.SIGKILL)

    def _end_epoch(self, net: Network, inner, writer, prog: Progress, lr: float, bar) -> None:
        """Evaluate on the test set, record the epoch, checkpoint."""
        t_eval = time.perf_counter()
        test_acc = net.accuracy(self.x_test, self.y_test)
        self._eval_s += time.perf_counter() - t_eval
        prog.history.append(
            {
                "epoch": prog.epoch,
                "test_accuracy": test_acc,
                "train_accuracy": prog.correct_this_epoch / self.x_train.shape[0],
                "learning_rate": lr,
                "pulses": _counts(self._recorder),
            }
        )
        prog.epoch += 1
        prog.position = 0
        prog.correct_this_epoch = 0
        self._checkpoint(writer, net, inner, prog)
        if bar is not None:
            bar.set_postfix_str(f"epoch {prog.epoch} test {test_acc:.2%}")

    def _transfer(self, net, backend, prog: Progress) -> None:
        if not net.cells.transfers:
            return
        prog.transfers += 1
        before = [dataclasses.replace(h.progress()) for h in _hardware(backend)]
        with self._context(phase=Phase.TRANSFER, transfer=prog.transfers, image=prog.images_seen):
            stats = net.cells.transfer(backend)
            _flush_deferred(backend)  # a RESET the transfer asked for, in its context
        prog.history.append({"transfer": prog.transfers, "images_seen": prog.images_seen, **stats})
        self._report_stations(backend, before, prog.transfers)

    def _report_stations(self, backend, before: list, transfer: int) -> None:
        """Log each station's visits, round trips and time of this transfer (INFO), and
        show them on the progress bar."""
        for hw, start in zip(_hardware(backend), before, strict=True):
            now = hw.progress()
            visits = now.visits - start.visits
            per_visit = (now.round_trips - start.round_trips) / max(visits, 1)
            self._station_line = (
                f"transfer {transfer}: {visits:,} visits, {per_visit:.2f} round trips/visit, "
                f"{now.busy_s - start.busy_s:.1f} s"
            )
            logger.info(
                "station %r, %s; since the start: %s",
                hw.station.name,
                self._station_line,
                now.line(),
            )

    # -- checkpoints ----------------------------------------------------------------------
    def _checkpoint(self, writer, net, inner, prog: Progress) -> None:
        # A station's waiting RESETs go out first, so that they are logged and counted
        # before the checkpoint records how far the log has come.
        _flush_deferred(inner)
        state = self._state(net, inner)
        writer.flush()
        prog.checkpoints += 1
        self.pool.reseed((self.cfg.seed, _PULSES, prog.checkpoints))
        meta = {
            "progress": prog.__dict__,
            "rng_state": net.rng.bit_generator.state,
            "pulse_records": writer.n_records,
            "pulse_counts": _counts(self._recorder),
        }
        checkpoint.write(writer.file, state, json.loads(json.dumps(meta, default=int)))

    def _load_checkpoint(self) -> tuple[CheckpointState, dict]:
        try:
            with open_run_file(self.out, "r") as f:
                stored = read_root_attrs(f)["config_text"]
                state, meta = checkpoint.latest(f)
        except OSError as exc:
            raise LogError(f"cannot open {self.out} to resume: {exc}") from None
        check_resume_meta(meta, self.out)

        # Where the data lives may differ between machines; everything else must match.
        def same(cfg: TrainConfig) -> str:
            return dataclasses.replace(cfg, data_dir="").to_json()

        if same(TrainConfig.from_run_file(stored, self.out)) != same(self.cfg):
            raise ConfigError(
                f"{self.out} was written with a different configuration; resume it with "
                "`hil train --resume RUN.h5` alone (the stored configuration is used)"
            )
        return state, meta

    def _restore(self, net: Network, inner, state: CheckpointState, meta: dict) -> Progress:
        net.cells.load_state(dict(state.cells))
        net.rng.bit_generator.state = meta["rng_state"]
        if isinstance(inner, Snapshotting):
            inner.restore(dict(state.backend))
        if self._recorder is not None:
            for op in Operation:
                self._recorder.counts[op] = int(meta["pulse_counts"].get(op.name, 0))
        prog = Progress(**meta["progress"])
        self.pool.reseed((self.cfg.seed, _PULSES, prog.checkpoints))
        return prog

    # -- reporting ------------------------------------------------------------------------
    def _bar(self, prog: Progress) -> tqdm | None:
        if not self.show_progress:
            return None
        total = self.cfg.epochs * self.x_train.shape[0]
        return tqdm(
            total=total,
            initial=prog.images_seen,
            unit="img",
            desc=self.cfg.cell,
            smoothing=0.05,
            mininterval=0.5,
        )

    def _bar_update(self, bar, prog: Progress, n: int) -> None:
        bar.update(n)
        acc = prog.correct_this_epoch / max(prog.position, 1)
        pulses = sum(_counts(self._recorder).values())
        line = f"ep {prog.epoch} train {acc:.1%} pulses {pulses:,}"
        if self._station_line:
            line += f"; station {self._station_line}"
        bar.set_postfix_str(line, refresh=False)

    def _summary(self, prog: Progress, wall_s: float) -> dict:
        epochs = [h for h in prog.history if "test_accuracy" in h]
        counts = _counts(self._recorder)
        return {
            "run_file": str(self.out),
            "schema_version": SCHEMA_VERSION,
            "seed": self.cfg.seed,
            "backend": self.cfg.backend,
            "dataset": self.cfg.dataset,
            "config_sha256": hashlib.sha256(self.cfg.to_json().encode()).hexdigest(),
            "cell": self.cfg.cell,
            "layers": list(self.cfg.layers),
            "epochs": len(epochs),
            "images_seen": prog.images_seen,
            "test_accuracy": [round(h["test_accuracy"], 6) for h in epochs],
            "train_accuracy": [round(h["train_accuracy"], 6) for h in epochs],
            "transfers": prog.transfers,
            "pulses_by_kind": counts,
            "pulses_total": int(sum(counts.values())),
            "wall_s": round(wall_s, 3),
        }


def _counts(recorder: Recorder | None) -> dict[str, int]:
    if recorder is not None:
        return {op.name: int(c) for op, c in recorder.counts.items()}
    return {}


def _store_stations(f, inner) -> None:
    """Keep the text of every station file the run uses, and what each of its instruments
    is (``/instruments/<role>``: resource, driver, options, identity, firmware, modules; the
    same as JSON in the root attribute ``instruments``), in the run file."""
    texts = [(str(s.path), s.text) for s in _stations(inner)]
    if texts:
        f.attrs["station_files"] = json.dumps(dict(texts))
    snapshots = [hw.instrument_snapshot for hw in _hardware(inner)]
    if not snapshots:
        return
    f.attrs["instruments"] = json.dumps(snapshots if len(snapshots) > 1 else snapshots[0])
    group = f.create_group("instruments")
    for k, snapshot in enumerate(snapshots):
        where = group if len(snapshots) == 1 else group.create_group(f"station{k}")
        for role, fields in snapshot.items():
            where.create_group(role).attrs.update(fields)


def _stations(inner: DeviceBackend | None) -> list:
    """The station files behind the run's devices."""
    return [p.station for p in _parts(inner) if isinstance(p, StationBacked)]


def _flush_deferred(inner: DeviceBackend | None) -> None:
    """Send the pulses a station part still holds back for its devices' next visits."""
    for part in _parts(inner):
        if isinstance(part, Deferring):
            part.flush_deferred()


def _hardware(inner: DeviceBackend | None) -> list[HardwareBackend]:
    """The run's probe-station parts."""
    return [p for p in _parts(inner) if isinstance(p, HardwareBackend)]


def _parts(inner: DeviceBackend | None) -> list[DeviceBackend]:
    """The backends the run's devices are on: a composite's parts, else ``inner`` itself."""
    if inner is None:
        return []
    return list(inner.parts) if isinstance(inner, Composed) else [inner]
