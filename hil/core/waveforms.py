"""Pulses as the waveforms testers output, and back.

Testers that take arbitrary waveforms (the 4225-PMU segment ARB, the B1530A WGFMU) are
given each pulse as a list of :class:`Segment` s; a 2-level pulse generator (the B1500A's
B1525A SPGU) as one :class:`Trapezoid`. The virtual testers decode what they receive into
pulses again. Both directions live here so that they cannot drift apart.

Shapes (``edge_s`` is the rise and fall time of every edge, a station setting):

- RESET / partial SET of amplitude A and width w: ``0→A`` in ``edge_s``, ``A`` for ``w``,
  ``A→0`` in ``edge_s``.
- ramp SET of amplitude A, step w, n steps: ``0→A`` in ``edge_s``, then n flat steps at
  ``A·(n−k)/n`` (k = 0..n−1) of ``w`` each, each step reached from the one before in
  ``edge_s``, then ``→0`` in ``edge_s`` — the 8-step ramp-down of Ambrogio et al. 2018,
  Extended Data Fig. 7. Every segment starts where the one before stopped.
- read at V for integration time w: ``0→V``, ``V`` for ``w`` with a spot-mean
  measurement, ``V→0``.

Decoding splits a waveform at its returns to 0 V. A pulse with one flat level that carries
a measurement is a read; with several descending flat levels it is a ramp SET; with one
level it is a RESET if ``|A| ≥ reset_threshold_V`` and a partial SET otherwise.

**Trapezoids** (SPGU PG mode: ``SPT ch, 1, delay, width, lead, trail`` + ``SPV ch, 1, 0,
peak``). A RESET / partial SET is one pulse of width ``w`` with both edges ``edge_s``. PG
mode cannot output a staircase, so a ramp SET of ``n`` steps of ``w`` is one pulse at ``A``
of width ``w`` whose trailing edge ``(n−1)·w + edge_s`` ramps down linearly through
(approximately) the staircase's levels ``A·(n−k)/n`` at ``t = k·w``. Decoding takes
``steps = round((trail − lead)/w) + 1``: ``steps ≥ 2`` (a trailing edge at least half a
step longer than the leading one) is a ramp SET; otherwise a RESET or partial SET by
``reset_threshold_V`` as above. (A ``trail > 1.5·w`` rule would miss 2-step ramps with
``edge_s < w/2``; this one agrees with it for ``steps ≥ 3``.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.core.errors import BackendError, ConfigError
from hil.core.pulses import (
    Operation,
    PartialSetPulse,
    Pulse,
    RampSetPulse,
    ReadPulse,
    ResetPulse,
)

DEFAULT_EDGE_S = 10e-9
"""Rise/fall time of every edge [ours: the 4225-PMU's 10 ns segment resolution, quoted in
../shared/reference/instruments.md]."""


@dataclass(frozen=True)
class Segment:
    """One linear piece of a waveform: ``start_V → stop_V`` over ``duration_s``."""

    duration_s: float
    start_V: float
    stop_V: float
    measure: bool = False
    """Whether the tester takes a spot-mean current measurement over this segment."""


def scalar_pulse(pulse: Pulse, i: int) -> Pulse:
    """Device ``i``'s own pulse out of a pulse whose fields may be per-device arrays."""

    def pick(v):
        a = np.asarray(v)
        return a.item() if a.ndim == 0 else a[i].item()

    if isinstance(pulse, RampSetPulse):
        return RampSetPulse(pick(pulse.amplitude_V), pick(pulse.width_s), int(pick(pulse.steps)))
    if isinstance(pulse, ReadPulse):
        return ReadPulse(pick(pulse.amplitude_V), pick(pulse.width_s), pulse.compliance_A)
    return type(pulse)(pick(pulse.amplitude_V), pick(pulse.width_s))


def segments(pulse: Pulse, edge_s: float = DEFAULT_EDGE_S) -> list[Segment]:
    """The waveform of one pulse with scalar fields (see the module docstring)."""
    a = float(pulse.amplitude_V)
    w = float(pulse.width_s)
    if isinstance(pulse, RampSetPulse):
        n = int(pulse.steps)
        levels = [a * (n - k) / n for k in range(n)]
        body = [Segment(w, levels[0], levels[0])]
        for before, after in zip(levels, levels[1:], strict=False):
            # Each step is reached by an edge, never a jump: a segment ARB must start where
            # the one before stopped (KXCI reference 7-48, 7-50), and a WGFMU vector only
            # sets the level a segment ends at (a jump would become a slope over the step).
            body += [Segment(edge_s, before, after), Segment(w, after, after)]
        return [Segment(edge_s, 0.0, a), *body, Segment(edge_s, levels[-1], 0.0)]
    measure = isinstance(pulse, ReadPulse)
    return [Segment(edge_s, 0.0, a), Segment(w, a, a, measure), Segment(edge_s, a, 0.0)]


def waveform(pulses: list[Pulse], edge_s: float = DEFAULT_EDGE_S) -> list[Segment]:
    """Pulses one after the other (each returns to 0 V before the next starts)."""
    out: list[Segment] = []
    for p in pulses:
        out.extend(segments(p, edge_s))
    return out


def decode(
    waveform: list[Segment], reset_threshold_V: float, compliance_A: float = 1e-4
) -> list[Pulse]:
    """The pulses a waveform applies, in order (the inverse of :func:`waveform`).

    Raises :class:`BackendError` for a waveform that is not made of this module's shapes.
    """
    pulses: list[Pulse] = []
    flats: list[Segment] = []
    level = 0.0
    for seg in waveform:
        if seg.start_V == seg.stop_V:
            if seg.start_V != 0.0:
                flats.append(seg)
        elif seg.stop_V == 0.0 and flats:
            pulses.append(_pulse_of(flats, reset_threshold_V, compliance_A))
            flats = []
        level = seg.stop_V
    if flats or level != 0.0:
        raise BackendError("waveform does not return to 0 V after its last pulse")
    return pulses


def _pulse_of(flats: list[Segment], reset_threshold_V: float, compliance_A: float) -> Pulse:
    first = flats[0]
    if any(s.measure for s in flats):
        return ReadPulse(first.start_V, sum(s.duration_s for s in flats), compliance_A)
    if len(flats) > 1:
        return RampSetPulse(first.start_V, first.duration_s, len(flats))
    if abs(first.start_V) >= reset_threshold_V:
        return ResetPulse(first.start_V, first.duration_s)
    return PartialSetPulse(first.start_V, first.duration_s)


@dataclass(frozen=True)
class Trapezoid:
    """One 2-level pulse: after ``delay_s``, 0 V → ``peak_V`` in ``lead_s``, ``peak_V`` for
    ``width_s``, back to 0 V in ``trail_s`` (the B1500A SPGU's ``SPT``/``SPV`` settings)."""

    peak_V: float
    width_s: float
    lead_s: float
    trail_s: float
    delay_s: float = 0.0


def trapezoid(pulse: Pulse, edge_s: float = DEFAULT_EDGE_S) -> Trapezoid:
    """The 2-level pulse that carries one program pulse with scalar fields (see the module
    docstring); raises :class:`ConfigError` for a ramp of fewer than one step."""
    width = float(pulse.width_s)
    trail = edge_s
    if isinstance(pulse, RampSetPulse):
        steps = int(pulse.steps)
        if steps < 1:
            raise ConfigError(f"a ramp SET needs >= 1 step, got {steps}")
        trail = (steps - 1) * width + edge_s
    return Trapezoid(float(pulse.amplitude_V), width, edge_s, trail)


def decode_trapezoid(shape: Trapezoid, reset_threshold_V: float) -> Pulse | None:
    """The program pulse a :class:`Trapezoid` applies (the inverse of :func:`trapezoid`);
    ``None`` for a 0 V peak."""
    if shape.peak_V == 0:
        return None
    steps = round((shape.trail_s - shape.lead_s) / shape.width_s) + 1
    if steps >= 2:
        return RampSetPulse(shape.peak_V, shape.width_s, steps)
    if abs(shape.peak_V) >= reset_threshold_V:
        return ResetPulse(shape.peak_V, shape.width_s)
    return PartialSetPulse(shape.peak_V, shape.width_s)


def same_pulse(a: Pulse, b: Pulse, rtol: float = 1e-6) -> bool:
    """Whether two scalar pulses are of the same kind with the same parameters."""
    return bool(
        a.op == b.op
        and np.isclose(float(a.amplitude_V), float(b.amplitude_V), rtol=rtol)
        and np.isclose(float(a.width_s), float(b.width_s), rtol=rtol)
        and int(a.n_steps) == int(b.n_steps)
    )


__all__ = [
    "DEFAULT_EDGE_S",
    "Operation",
    "Segment",
    "Trapezoid",
    "decode",
    "decode_trapezoid",
    "same_pulse",
    "scalar_pulse",
    "segments",
    "trapezoid",
    "waveform",
]
