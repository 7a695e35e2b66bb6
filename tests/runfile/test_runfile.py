"""Schema versioning: readers accept every layout version hil has written, refuse others."""

import h5py
import numpy as np
import pytest

from hil.core.errors import LogError
from hil.runfile.container import open_run_file
from hil.runfile.reader import PulseLogReader
from hil.runfile.schema import SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS
from hil.runfile.writer import PulseLogWriter

WRITTEN_SO_FAR = (1, 2, 3)
"""Every schema version any hil release has written (append when SCHEMA_VERSION is bumped)."""

G = np.float32([1e-6, 2e-6, 3e-6])


def _log(path, version="keep", codec="deflate"):
    with PulseLogWriter(path, swmr=False, codec=codec) as w:
        w.append(np.arange(3), 0, 0.0, amplitude_V=0.2, width_s=1e-6, g_S=G, read_V=0.2)
    if version != "keep":
        with h5py.File(path, "r+") as f:
            if version is None:
                del f.attrs["schema_version"]
            else:
                f.attrs["schema_version"] = version
    return path


def test_this_hil_writes_a_version_it_reads_and_reads_every_version_ever_written():
    assert SCHEMA_VERSION in SUPPORTED_SCHEMA_VERSIONS
    assert set(WRITTEN_SO_FAR) <= set(SUPPORTED_SCHEMA_VERSIONS)
    assert max(WRITTEN_SO_FAR) == SCHEMA_VERSION


@pytest.mark.parametrize("version", SUPPORTED_SCHEMA_VERSIONS)
def test_reader_accepts_every_supported_version(tmp_path, version, as_legacy_layout):
    if version < 3:
        path = as_legacy_layout(_log(tmp_path / "run.h5", codec="blosc2"), version)
    else:
        path = _log(tmp_path / "run.h5")
    with open_run_file(path) as f:
        assert int(f.attrs["schema_version"]) == version
    with PulseLogReader(path) as r:
        assert r.attrs["schema_version"] == version
        np.testing.assert_array_equal(r.column("device"), [0, 1, 2])
        # stored (schema 1, 2) or derived (3): the same float32 product
        np.testing.assert_array_equal(r.column("current_A"), G * np.float32(0.2))


def test_newer_version_is_refused_with_upgrade_advice(tmp_path):
    path = _log(tmp_path / "run.h5", np.int64(99))
    for opener in (open_run_file, PulseLogReader):
        with pytest.raises(LogError, match=r"schema_version 99 \(written by hil .*newer") as e:
            opener(path)
        assert "reads schema versions 1" in str(e.value) and "upgrade hil" in str(e.value)


def test_older_unknown_version_is_refused_naming_the_writer(tmp_path):
    path = _log(tmp_path / "run.h5", np.int64(0))
    with pytest.raises(LogError, match=r"schema_version 0 .*with the hil version that wrote it"):
        open_run_file(path)


@pytest.mark.parametrize("version", [None, "one"])
def test_missing_or_invalid_version_is_refused_saying_what_to_do(tmp_path, version):
    path = _log(tmp_path / "run.h5", version)
    with pytest.raises(LogError, match=r"no valid integer 'schema_version'.*written by `hil"):
        open_run_file(path)


# -- fitted-model files (hil/fit.py), when present ----------------------------------------
def _model(tmp_path, version="keep"):
    fit = pytest.importorskip("hil.devicemodel.model")
    path = fit.FittedModel(meta={"note": "test"}).save(tmp_path / "model.h5")
    if version != "keep":
        with h5py.File(path, "r+") as f:
            if version is None:
                del f.attrs["schema_version"]
            else:
                f.attrs["schema_version"] = version
    return fit, path


def test_fitted_model_of_its_own_version_loads(tmp_path):
    fit, path = _model(tmp_path)
    with h5py.File(path) as f:
        assert f.attrs["hil_kind"] == fit.FITTED_KIND
        assert int(f.attrs["schema_version"]) == fit.MODEL_SCHEMA_VERSION
    assert fit.FittedModel.load(path).meta["note"] == "test"


def test_fitted_model_of_a_newer_version_is_refused(tmp_path):
    fit, path = _model(tmp_path, np.int64(99))
    with pytest.raises(LogError, match=r"schema_version 99.*upgrade hil"):
        fit.FittedModel.load(path)


def test_fitted_model_without_version_is_refused(tmp_path):
    fit, path = _model(tmp_path, None)
    with pytest.raises(LogError, match=r"schema_version None.*re-fit it with `hil fit"):
        fit.FittedModel.load(path)


def test_run_file_is_not_a_fitted_model_and_vice_versa(tmp_path):
    fit, model = _model(tmp_path)
    with pytest.raises(LogError, match="hil_kind='fitted-model'; expected 'hil-run'"):
        open_run_file(model)
    run = _log(tmp_path / "run.h5")
    with pytest.raises(LogError, match="hil_kind='hil-run', not 'fitted-model'"):
        fit.FittedModel.load(run)
