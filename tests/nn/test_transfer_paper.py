"""The paper's transfer (synapse.residual = "paper"): both capacitors to 0.5 V, the pair
programmed with W_transfer = W − p·offset − p·[g(0.5 V) − g_shared(0.5 V)], both PCM devices
RESET where 0 < p·W_transfer < offset [Ambrogio et al. 2018, Extended Data Fig. 9 caption].

Hand-built cases on ideal devices (the ``ideal`` emulator, ideal capacitors) with a
mismatch between each cell's read transistor and its column's reference set by hand.
"""

from __future__ import annotations

import numpy as np

from hil.nn.cells import Ambrogio2PCM3T1C
from hil.nn.config import SynapseConfig, TrainConfig
from hil.nn.layout import Layout
from hil.nn.periphery import CapacitorConfig
from sim_backends.emulator import EmulatorBackend

US = 1e6
F, OFFSET, SCALE = 3.0, 2.0, 40.0


def paper_cells(residual: str = "paper"):
    cfg = TrainConfig(
        layers=(4, 1),  # 5 cells, one column
        capacitor=CapacitorConfig.ideal(),
        synapse=SynapseConfig(residual=residual),
    )
    layout = Layout(cfg.layers)
    cells = Ambrogio2PCM3T1C(layout, cfg, np.random.default_rng(0))
    # Mismatch by hand: g(0.5 V) = slope·(0.5 − vth) per cell, the reference 2 µS.
    cells.cap.slope[:] = [20.0, 24.0, 16.0, 20.0, 30.0]
    cells.cap.vth[:] = [0.4, 0.4, 0.4, 0.35, 0.4]
    cells._refresh_weights()
    # Record what each transfer asks program-and-verify for (device-id order, µS).
    cells.targets_uS = []
    program = cells._program

    def recording(backend, target_S, g_start_S=None):
        cells.targets_uS.append(np.asarray(target_S) * US)
        return program(backend, target_S, g_start_S)

    cells._program = recording
    return cells, EmulatorBackend(layout.n_devices, "ideal", seed=1)


def mismatch_uS(cells) -> np.ndarray:
    """g(0.5 V) − g_shared(0.5 V) of each cell, by hand from the slopes and thresholds."""
    g = cells.cap.slope * (0.5 - cells.cap.vth)
    return (g - 20.0 * (0.5 - 0.4)).astype(np.float64)  # [0, 0.4, −0.4, 1, 1]


def check_transfer(cells, w_uS, p):
    """The last transfer asked for W_transfer = W − p·offset − p·m (both RESET in the
    caption's window), and the weight is now the programmed pair + p·m."""
    m = mismatch_uS(cells)
    w_t = w_uS - p * OFFSET - p * m
    reset = (p * w_t > 0) & (p * w_t < OFFSET)
    lay = cells.layout
    t = cells.targets_uS[-1]
    np.testing.assert_allclose(t[lay.pos_dev], np.where(~reset & (w_t > 0), w_t / F, 0), atol=1e-5)
    np.testing.assert_allclose(t[lay.neg_dev], np.where(~reset & (w_t < 0), -w_t / F, 0), atol=1e-5)
    # Both capacitors at 0.5 V: they add exactly p·m to what the devices hold.
    np.testing.assert_array_equal(cells.cap.v, 0.5)
    np.testing.assert_array_equal(cells.cap.v_ref, 0.5)
    pair = F * (cells.g_pos_uS.astype(np.float64) - cells.g_neg_uS)
    np.testing.assert_allclose(cells.weights[0].ravel() * SCALE, pair + p * m, atol=1e-4)
    # Every device is within program-and-verify's ±0.5 µS of what it was asked for.
    assert np.all(np.abs(cells.g_pos_uS - t[lay.pos_dev]) <= 0.5 + 1e-4)
    assert np.all(np.abs(cells.g_neg_uS - t[lay.neg_dev]) <= 0.5 + 1e-4)
    return reset


def test_first_transfer_programs_w_minus_offset_minus_mismatch():
    cells, backend = paper_cells()
    # W in µS: far positive, inside the RESET window, far negative, small negative, 0.
    w_uS = np.array([12.0, 3.5, -6.0, -1.0, 0.0])
    cells.initialize([(w_uS / SCALE).reshape(5, 1).astype(np.float32)], backend)
    assert cells.polarity == 1
    # W_transfer = [10, 1.1, −7.6, −4, −3]: only cell 1 lies in (0, offset).
    reset = check_transfer(cells, w_uS, +1)
    np.testing.assert_array_equal(reset, [False, True, False, False, False])


def test_transfer_with_inverted_polarity_subtracts_the_mismatch_with_the_new_sign():
    cells, backend = paper_cells()
    cells.initialize([np.zeros((5, 1), np.float32)], backend)
    # Training moved the capacitors; the transfer carries the weight used so far.
    cells.cap.v[:] = [0.6, 0.45, 0.7, 0.5, 0.52]
    cells.cap.v_ref[:] = 0.55
    cells._refresh_weights()
    w_uS = cells.weights[0].ravel().astype(np.float64) * SCALE
    stats = cells.transfer(backend)
    assert cells.polarity == -1 and stats["polarity"] == -1
    reset = check_transfer(cells, w_uS, -1)
    assert reset.any() and not reset.all()  # the case covers both branches


def test_reset_window_is_the_captions_not_the_weights():
    """W = 3 µS, no mismatch: W_transfer = 1 µS lies in (0, offset), so the paper RESETs
    both; the 'charge' rule (0 < W < offset) programs G+ = 1/3 µS. W = 1.5 µS: the other
    way round (W_transfer < 0, so G− gets 0.5/3)."""
    lay = Layout((4, 1))
    w = np.array([3.0, 1.5, 0.0, 0.0, 0.0], dtype=np.float32)
    for residual, g_pos, g_neg in (
        ("paper", [0, 0, 0, 0, 0], [0, 0.5 / 3, 2 / 3, 2 / 3, 2 / 3]),
        ("charge", [1 / 3, 0, 0, 0, 0], [0, 0, 2 / 3, 2 / 3, 2 / 3]),
    ):
        cells, _ = paper_cells(residual)
        held = np.zeros(5, np.float32) if residual == "paper" else None
        t = cells._split_targets(w, OFFSET, +1, held_uS=held) * US
        np.testing.assert_allclose(t[lay.pos_dev], g_pos, atol=1e-6)
        np.testing.assert_allclose(t[lay.neg_dev], g_neg, atol=1e-6)


def test_a_stuck_device_is_compensated_by_its_partner_with_the_mismatch():
    cells, _ = paper_cells()
    lay = cells.layout
    m = mismatch_uS(cells).astype(np.float32)
    cells.stuck[lay.pos_dev[1]] = True  # G+ of cell 1 stuck at 5 µS
    g_now = np.zeros(lay.n_devices)
    g_now[lay.pos_dev[1]] = 5e-6
    w = np.array([12.0, 5.0, -6.0, -1.0, 0.0], dtype=np.float32)
    t = cells._split_targets(w, OFFSET, +1, g_now, held_uS=m) * US
    # G− = G+ − W_transfer/F = 5 − (5 − 2 − 0.4)/3
    np.testing.assert_allclose(t[lay.neg_dev[1]], 5 - 2.6 / 3, rtol=1e-5)


def test_reinit_keeps_its_rule_and_the_mismatch():
    cells, backend = paper_cells("reinit")
    w_uS = np.array([12.0, 3.5, -6.0, -1.0, 0.0])
    cells.initialize([(w_uS / SCALE).reshape(5, 1).astype(np.float32)], backend)
    # reinit: the pair is asked for W − offset (RESET where 0 < W < offset: none here),
    # and the capacitors' mismatch stays in the weight.
    t = cells.targets_uS[-1]
    lay = cells.layout
    np.testing.assert_allclose(t[lay.pos_dev], [10 / F, 1.5 / F, 0, 0, 0], atol=1e-5)
    np.testing.assert_allclose(t[lay.neg_dev], [0, 0, 8 / F, 3 / F, 2 / F], atol=1e-5)
    pair = F * (cells.g_pos_uS.astype(np.float64) - cells.g_neg_uS)
    np.testing.assert_allclose(
        cells.weights[0].ravel() * SCALE, pair + mismatch_uS(cells), atol=1e-4
    )
