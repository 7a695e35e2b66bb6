"""hil.fit's options and record subset: errors a user can make, and the device choice."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hil.core.errors import ConfigError
from hil.fit import FitOptions, fit_log
from hil.fit.load import choose_devices, hash_order


def test_unknown_option_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown fit option\(s\) g_bin.*known: max_records"):
        fit_log("run.h5", g_bin=0.2)


@pytest.mark.parametrize("field", ["max_records", "chunk_records"])
def test_record_counts_must_be_positive(field):
    with pytest.raises(ConfigError, match="max_records and chunk_records must be >= 1"):
        FitOptions(**{field: 0})


def test_no_run_file_is_an_error():
    with pytest.raises(ConfigError, match="at least one run file"):
        fit_log([])


def test_recorded_options_are_the_ones_that_change_the_statistics():
    opt = FitOptions(g_bin_uS=0.25, chunk_records=10)
    rec = opt.recorded()
    assert rec["g_bin_uS"] == 0.25 and "chunk_records" not in rec
    assert json.loads(json.dumps(rec)) == rec


def test_device_subset_is_a_hash_prefix_within_budget():
    counts = np.full(1000, 7)
    keep = choose_devices(counts, budget=700)
    assert keep.sum() == 100 and counts[keep].sum() <= 700
    # The prefix of the hash order: the kept devices are the first 100 of it, and not
    # simply the lowest ids.
    order = hash_order(1000)
    assert set(np.flatnonzero(keep)) == set(order[:100])
    assert np.flatnonzero(keep).max() > 500
