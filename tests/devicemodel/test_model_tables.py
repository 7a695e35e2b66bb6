"""The fitted-model format: typed tables, save → load, and files in the schema-1 layout."""

from __future__ import annotations

import math
from dataclasses import fields

import h5py
import numpy as np
import pytest

from hil.core.errors import ConfigError, LogError
from hil.devicemodel import (
    HISTORY_BINS,
    STATISTICS,
    DeviceTable,
    DriftTable,
    FittedModel,
    IncrementTable,
    RampTable,
    ReadNoiseTable,
    ResetTable,
)


def _arr(*shape, start=0.0):
    return start + np.arange(math.prod(shape), dtype=np.float64).reshape(shape)


def _model() -> FittedModel:
    shape = (2, HISTORY_BINS, 3)
    inc = IncrementTable(
        group_amplitude_V=np.array([1.2, 1.5]),
        group_width_s=np.array([50e-9, 100e-9]),
        g_edges_uS=_arr(4),
        g_mean_uS=_arr(*shape),
        mean_uS=_arr(*shape, start=1),
        sigma_meas_uS=_arr(*shape, start=2),
        sigma_uS=_arr(*shape, start=3),
        count=_arr(*shape, start=4),
        ks=_arr(*shape, start=5),
        n_events=123.0,
        ks_pooled=0.01,
        ks_n=120,
    )
    ramp = RampTable(
        log10_width_edges=_arr(5),
        log10_width_mean=_arr(4),
        g_mean_uS=_arr(4, start=1),
        sigma_meas_uS=_arr(4, start=2),
        sigma_uS=_arr(4, start=3),
        count=_arr(4, start=4),
        ks=np.full(4, np.nan),
        n_events=40.0,
    )
    rn = ReadNoiseTable(
        g_edges_uS=_arr(3),
        g_mean_uS=_arr(2),
        sigma_uS=_arr(2, start=0.1),
        count=_arr(2, start=30),
        ks=_arr(2),
        slope=0.03,
        offset_uS=0.13,
        source="bursts",
        n_events=61.0,
        ks_pooled=0.002,
        ks_n=61,
    )
    return FittedModel(
        increment=inc,
        ramp=ramp,
        read_noise=rn,
        devices=DeviceTable(stuck_fraction=0.001, n_devices=1000.0, n_events=1000.0),
        meta={"digest": "ab" * 16, "n_records_used": 42, "note": "test"},
    )


def test_save_load_round_trip_keeps_every_field_and_type(tmp_path):
    model = _model()
    back = FittedModel.load(model.save(tmp_path / "m.h5"))
    assert back.meta == model.meta
    assert back.reset is None and back.drift is None  # not fitted stays not fitted
    for name in ("increment", "ramp", "read_noise", "devices"):
        a, b = model.table(name), back.table(name)
        assert type(b) is type(a)
        for f in fields(a):
            va, vb = getattr(a, f.name), getattr(b, f.name)
            if isinstance(va, np.ndarray):
                assert vb.dtype == va.dtype and vb.shape == va.shape
                np.testing.assert_array_equal(vb, va, err_msg=f"{name}.{f.name}")
            else:
                assert type(vb) is type(va) and (vb == va or (va != va and vb != vb)), f.name
    assert back.devices.increment_d2d_devices is None  # optional entries stay absent
    assert [r["statistic"] for r in back.summary_rows()] == list(STATISTICS)
    assert back.has("increment") and not back.has("drift")


def test_file_layout_is_schema_1(tmp_path):
    """One group per statistic; scalars as attributes, arrays as datasets; a statistic
    without data as a group with n_events = 0 and an empty fit only."""
    path = _model().save(tmp_path / "m.h5")
    with h5py.File(path) as f:
        assert sorted(f) == sorted(STATISTICS)
        assert dict(f["drift"].attrs) == {
            "n_events": 0.0,
            "ks_pooled": pytest.approx(np.nan, nan_ok=True),
            "ks_n": 0,
        }
        assert len(f["drift"]) == 0
        rn = f["read_noise"]
        assert rn.attrs["source"] == "bursts" and rn.attrs["slope"] == 0.03
        assert rn.attrs["ks_n"].dtype == np.int64 and rn.attrs["n_events"].dtype == np.float64
        assert set(rn) == {"g_edges_uS", "g_mean_uS", "sigma_uS", "count", "ks"}
        assert f["increment"]["mean_uS"].shape == (2, HISTORY_BINS, 3)
        assert "increment_d2d_devices" not in f["devices"].attrs


def _write_v1(path, groups):
    """A file as the dict-based writer of schema version 1 wrote it."""
    with h5py.File(path, "w") as f:
        f.attrs["hil_kind"] = "fitted-model"
        f.attrs["schema_version"] = np.int64(1)
        f.attrs["meta_sources"] = '["run.h5"]'
        for name, entries in groups.items():
            g = f.create_group(name)
            for k, v in entries.items():
                if np.ndim(v):
                    g.create_dataset(k, data=v)
                else:
                    g.attrs[k] = v
    return path


def test_existing_schema_1_file_loads_into_typed_tables(tmp_path):
    reset = {
        "g_mean_uS": 0.1,
        "sigma_meas_uS": 0.13,
        "sigma_uS": 0.0,
        "hist_edges_uS": np.linspace(0, 1, 51),
        "hist_count": np.ones(50),
        "n_events": 500.0,
        "ks_pooled": 0.004,
        "ks_n": np.int64(500),
    }
    drift = {
        "g_edges_uS": _arr(3),
        "g_mean_uS": _arr(2),
        "nu_mean": np.array([0.05, 0.06]),
        "nu_sigma": np.array([0.01, 0.01]),
        "nu_sigma_meas": np.array([0.02, 0.02]),
        "count": np.array([100.0, 200.0]),
        "ks": np.array([0.02, 0.03]),
        "t0_s": 20.0,
        "n_events": 300.0,
        "ks_pooled": 0.01,
        "ks_n": np.int64(300),
    }
    empty = {"n_events": 0.0, "ks_pooled": np.nan, "ks_n": np.int64(0)}
    path = _write_v1(
        tmp_path / "old.h5", {"reset": reset, "drift": drift, "increment": empty, "devices": empty}
    )
    m = FittedModel.load(path)
    assert isinstance(m.reset, ResetTable) and m.reset.g_mean_uS == 0.1
    assert isinstance(m.reset.ks_n, int) and isinstance(m.reset.g_mean_uS, float)
    assert isinstance(m.drift, DriftTable) and m.drift.t0_s == 20.0
    np.testing.assert_array_equal(m.drift.nu_mean, [0.05, 0.06])
    assert m.increment is None and m.ramp is None and m.read_noise is None
    assert m.devices.n_events == 0.0 and m.devices.stuck_fraction == 0.0  # defaults
    assert m.meta == {"sources": '["run.h5"]'}


def test_group_that_does_not_match_is_refused_saying_what_to_do(tmp_path):
    path = _write_v1(tmp_path / "bad.h5", {"reset": {"g_mean_uS": 0.1, "n_events": 5.0}})
    with pytest.raises(LogError, match=r"group 'reset'.*missing: hist_count.*re-fit it"):
        FittedModel.load(path)
    path = _write_v1(tmp_path / "bad2.h5", {"ramps": {"n_events": 5.0}})
    with pytest.raises(LogError, match=r"unknown statistic group 'ramps'"):
        FittedModel.load(path)


def test_unknown_statistic_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown statistic 'noise'.*read_noise"):
        FittedModel().has("noise")


def test_constructor_takes_tables_by_name_only():
    with pytest.raises(TypeError):
        FittedModel({}, {})  # type: ignore[misc]
