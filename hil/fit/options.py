"""The options of a fit: record budget, bin widths and the time limits that classify reads."""

from __future__ import annotations

from dataclasses import dataclass, fields

from hil.core.errors import ConfigError


@dataclass(frozen=True)
class FitOptions:
    """How :func:`hil.fit.fit_log` reads a log and bins its statistics.

    The defaults suit the logs of ``hil characterize`` and of program-and-verify transfers
    (reads within a second of the pulse they verify, drift reads from seconds on).
    """

    max_records: int = 8_000_000
    """Records kept in memory; a device subset is chosen to fit (peak memory ≈ 150 bytes ×
    max_records)."""
    chunk_records: int = 2_000_000
    """Records read from the file per step."""
    g_bin_uS: float = 0.5
    """Width of the conductance bins [µS]."""
    ramp_bins: int = 24
    """Number of bins of log10(ramp step length)."""
    min_count: int = 20
    """Fewest samples for a bin to be used by interpolation."""
    read_gap_s: float = 1.0
    """Longest delay [s] of a read that counts as "right after" a pulse."""
    drift_min_dt_s: float = 1.0
    """Drift reads start this long [s] after programming."""
    drift_min_span: float = 10.0
    """Drift reads of one programming event must span this factor in time."""
    burst_rel: float = 0.01
    """Consecutive reads closer than max(burst_abs_s, burst_rel × age since programming)
    form a read-noise burst."""
    burst_abs_s: float = 1e-3
    """Absolute part [s] of the burst gap (see ``burst_rel``)."""
    pair_ratio: float = 2.0
    """Without bursts: pairs of consecutive reads whose ages since programming differ by at
    most this factor give σ² = Var(G₂ − G₁)/2 per G bin."""
    stuck_span_uS: float = 2.0
    """How far [µS] from the RESET level a stuck device stays."""

    def __post_init__(self) -> None:
        if self.max_records < 1 or self.chunk_records < 1:
            raise ConfigError("max_records and chunk_records must be >= 1")

    def recorded(self) -> dict[str, int | float]:
        """The options stored in the model's ``meta["fit_options"]`` (those that change the
        statistics; the chunk size and the burst gap do not, by design or in practice)."""
        names = (
            "max_records",
            "g_bin_uS",
            "ramp_bins",
            "min_count",
            "read_gap_s",
            "drift_min_dt_s",
            "drift_min_span",
            "stuck_span_uS",
            "pair_ratio",
        )
        return {name: getattr(self, name) for name in names}

    @classmethod
    def names(cls) -> list[str]:
        """Every option's name."""
        return [f.name for f in fields(cls)]
