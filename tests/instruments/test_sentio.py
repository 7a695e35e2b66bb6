"""Protocol tests of the MPI SENTIO prober driver, from MPI's own command material.

Replies are those MPI's bindings (sentio-prober-control 26.2: ``Response.parse_resp``, the
command groups' parsing and their unit tests) and MPI's C# example expect: ``*RCS 1`` has no
reply, ``*IDN?`` a bare one, every native command ``errc,cmdId,message``.
"""

from __future__ import annotations

import pytest
from pymeasure.test import expected_protocol

from hil.core.errors import BackendError, ConfigError
from instruments.drivers.sentio import ERROR_END_OF_ROUTE, Sentio, parse_reply
from instruments.errors import ProberError
from instruments.probers import SentioProber

RCS = ("*RCS 1", None)
"""Switch to SENTIO's native command set: written before the first native command, no reply."""
IDN = "MPI Corporation,Sentio - Probe System Software Suite,0,23.2.99.0"


def test_identify_is_low_level_and_does_not_switch_the_command_set():
    with expected_protocol(Sentio, [("*IDN?", IDN)]) as inst:
        assert inst.id == IDN
        assert not inst.native_command_set


def test_rcs_goes_once_before_the_first_native_command():
    with expected_protocol(
        Sentio,
        [RCS, ("status:get_version", "0,0,Version: 26.0.4"), ("*IDN?", IDN),
         ("move_chuck_separation", "0,0,9700.0")],
    ) as inst:  # fmt: skip
        assert inst.version == "Version: 26.0.4"
        assert inst.id == IDN
        assert inst.move_chuck_separation() == 9700.0


def test_contact_and_separation_answer_the_height_in_um():
    with expected_protocol(
        Sentio,
        [RCS, ("move_chuck_contact", "0,0,10000.0"), ("move_chuck_separation", "0,0,9700")],
    ) as inst:
        assert inst.move_chuck_contact() == 10000.0
        assert inst.move_chuck_separation() == 9700.0


def test_contact_answering_ok_instead_of_a_height_is_refused():
    with expected_protocol(Sentio, [RCS, ("move_chuck_contact", "0,0,OK")]) as inst:
        with pytest.raises(ProberError, match="1 numbers, got 'OK'"):
            inst.move_chuck_contact()


def test_move_chuck_home_answers_x_and_y():
    with expected_protocol(Sentio, [RCS, ("move_chuck_home", "0,0,250,-12.5")]) as inst:
        assert inst.move_chuck_home() == (250.0, -12.5)


def test_error_reply_raises_with_code_and_text():
    with expected_protocol(
        Sentio, [RCS, ("move_chuck_contact", "23,0,Contact height not set")]
    ) as inst:
        with pytest.raises(ProberError, match="error 23: Contact height not set") as info:
            inst.move_chuck_contact()
    assert info.value.code == 23
    assert isinstance(info.value, BackendError)


def test_error_code_ignores_status_bits():
    # 1024 = status bit 0 (last die) with error code 0: success.
    assert parse_reply("x", "1024,0,OK") == (1, "OK")
    # 1024 + 6: error 6 (invalid parameter) with a status flag.
    with pytest.raises(ProberError, match="error 6"):
        parse_reply("x", "1030,0,bad")


@pytest.mark.parametrize("reply", ["", "OK", "a,b,c", "0"])
def test_malformed_reply_raises(reply):
    with expected_protocol(Sentio, [RCS, ("move_chuck_separation", reply)]) as inst:
        with pytest.raises(ProberError, match="unparsable"):
            inst.move_chuck_separation()


def test_step_die():
    with expected_protocol(Sentio, [RCS, ("map:step_die 3, -4, 0", "0,0,3,-4,0")]) as inst:
        assert inst.step_die(3, -4) == (3, -4, 0)
        assert inst.end_of_route is False


def test_step_die_onto_the_last_die_sets_end_of_route():
    with expected_protocol(Sentio, [RCS, ("map:step_die 1, 2, 1", "1024,0,1,2,1")]) as inst:
        assert inst.step_die(1, 2, site=1) == (1, 2, 1)
        assert inst.end_of_route is True


def test_step_die_error():
    with expected_protocol(
        Sentio, [RCS, ("map:step_die 99, 99, 0", "8,0,Die 99,99 is not in the wafer map")]
    ) as inst:
        with pytest.raises(ProberError, match="error 8: Die 99,99 is not in the wafer map"):
            inst.step_die(99, 99)


@pytest.mark.parametrize(
    "args", [(1.5, 2), ("1", 2), (1, None), (True, 2), (1, 2, -1), (1, 2, 0.0)]
)
def test_step_die_rejects_bad_arguments_before_sending(args):
    with expected_protocol(Sentio, []) as inst:
        with pytest.raises(ConfigError):
            inst.step_die(*args)


def test_step_until_end_of_route_as_mpi_documents():
    """MPI's stepping loop: step first, then next until the last-die flag; one more step is
    error 11 (end of route)."""
    with expected_protocol(
        Sentio,
        [
            RCS,
            ("map:step_first_die", "0,0,0,0,0"),
            ("map:step_next_die", "0,0,1,0,0"),
            ("map:step_next_die", "1024,0,2,0,0"),
            ("map:step_next_die", "11,0,End of route"),
        ],
    ) as inst:
        assert inst.step_first_die() == (0, 0, 0)
        assert inst.step_next_die() == (1, 0, 0)
        assert inst.end_of_route is False
        assert inst.step_next_die() == (2, 0, 0)
        assert inst.end_of_route is True
        with pytest.raises(ProberError, match="end of route") as info:
            inst.step_next_die()
    assert info.value.code == ERROR_END_OF_ROUTE


def test_step_next_die_bad_message_raises():
    with expected_protocol(Sentio, [RCS, ("map:step_next_die", "0,0,OK")]) as inst:
        with pytest.raises(ProberError, match="3 numbers"):
            inst.step_next_die()


def test_die_position():
    with expected_protocol(Sentio, [RCS, ("map:die:get_current_index", "0,0,5,6,7")]) as inst:
        assert inst.die_position() == (6, 7)


def test_die_position_no_die_active():
    with expected_protocol(
        Sentio, [RCS, ("map:die:get_current_index", "0,0,No die active")]
    ) as inst:
        with pytest.raises(ProberError, match="No die active"):
            inst.die_position()


def test_the_station_prober_identifies_with_the_bare_idn():
    with expected_protocol(SentioProber, [("*IDN?", IDN)]) as prober:
        assert prober.identify() == IDN
        assert any(w.upper() in IDN.upper() for w in SentioProber.identity)


def test_the_station_prober_separates_steps_and_contacts():
    with expected_protocol(
        SentioProber,
        [
            RCS,
            ("move_chuck_separation", "0,0,9700.0"),
            ("map:step_die 1, 0, 0", "0,0,1,0,0"),
            ("move_chuck_contact", "0,0,10000.0"),
        ],
    ) as prober:
        prober.separate()
        prober.step_to(1, 0)
        prober.contact()


def test_the_station_prober_refuses_a_step_to_another_die():
    with expected_protocol(SentioProber, [RCS, ("map:step_die 1, 0, 0", "0,0,0,1,0")]) as prober:
        with pytest.raises(ProberError, match=r"stepped to die \(0, 1\), asked for \(1, 0\)"):
            prober.step_to(1, 0)
