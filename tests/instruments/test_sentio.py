"""Protocol tests of the MPI SENTIO prober driver against the remote command set."""

from __future__ import annotations

import pytest
from pymeasure.test import expected_protocol

from hil.core.errors import BackendError, ConfigError
from instruments.drivers.sentio import (
    CMD_CURRENT_DIE,
    CMD_MOVE_CHUCK_CONTACT,
    CMD_MOVE_CHUCK_SEPARATION,
    CMD_STEP_FIRST_DIE,
    CMD_STEP_NEXT_DIE,
    Sentio,
    parse_reply,
)
from instruments.errors import ProberError


def test_command_strings():
    assert CMD_MOVE_CHUCK_CONTACT == "move_chuck_contact"
    assert CMD_MOVE_CHUCK_SEPARATION == "move_chuck_separation"
    assert CMD_STEP_FIRST_DIE == "map:step_first_die"
    assert CMD_STEP_NEXT_DIE == "map:step_next_die"
    assert CMD_CURRENT_DIE == "map:die:get_current_index"


def test_move_chuck_contact_and_separation():
    with expected_protocol(
        Sentio,
        [("move_chuck_contact", "0,0,OK"), ("move_chuck_separation", "0,0,OK")],
    ) as inst:
        assert inst.move_chuck_contact() is None
        assert inst.move_chuck_separation() is None


def test_error_reply_raises_with_code_and_text():
    with expected_protocol(Sentio, [("move_chuck_contact", "56,0,Chuck is not homed")]) as inst:
        with pytest.raises(ProberError, match="error 56: Chuck is not homed") as info:
            inst.move_chuck_contact()
    assert info.value.code == 56
    assert isinstance(info.value, BackendError)


def test_error_code_ignores_status_bits():
    # 1024 = status bit 0 (end of route) with error code 0: success.
    assert parse_reply("x", "1024,0,OK") == (1, "OK")
    # 1024 + 3: error 3 with a status flag.
    with pytest.raises(ProberError, match="error 3"):
        parse_reply("x", "1027,0,bad")


@pytest.mark.parametrize("reply", ["", "OK", "a,b,c", "0"])
def test_malformed_reply_raises(reply):
    with expected_protocol(Sentio, [("move_chuck_separation", reply)]) as inst:
        with pytest.raises(ProberError, match="unparsable"):
            inst.move_chuck_separation()


def test_step_die():
    with expected_protocol(Sentio, [("map:step_die 3, -4, 0", "0,0,3,-4,0")]) as inst:
        assert inst.step_die(3, -4) == (3, -4, 0)
        assert inst.end_of_route is False


def test_step_die_with_site_and_end_of_route():
    with expected_protocol(Sentio, [("map:step_die 1, 2, 1", "1024,0,1,2,1")]) as inst:
        assert inst.step_die(1, 2, site=1) == (1, 2, 1)
        assert inst.end_of_route is True


def test_step_die_error():
    with expected_protocol(Sentio, [("map:step_die 99, 99, 0", "8,0,Die not found")]) as inst:
        with pytest.raises(ProberError, match="error 8: Die not found"):
            inst.step_die(99, 99)


@pytest.mark.parametrize(
    "args", [(1.5, 2), ("1", 2), (1, None), (True, 2), (1, 2, -1), (1, 2, 0.0)]
)
def test_step_die_rejects_bad_arguments_before_sending(args):
    with expected_protocol(Sentio, []) as inst:
        with pytest.raises(ConfigError):
            inst.step_die(*args)


def test_step_first_and_next_die():
    with expected_protocol(
        Sentio,
        [
            ("map:step_first_die", "0,0,0,0,0"),
            ("map:step_next_die", "0,0,1,0,0"),
            ("map:step_next_die", "1024,0,2,0,0"),
        ],
    ) as inst:
        assert inst.step_first_die() == (0, 0, 0)
        assert inst.step_next_die() == (1, 0, 0)
        assert inst.end_of_route is False
        assert inst.step_next_die() == (2, 0, 0)
        assert inst.end_of_route is True


def test_step_next_die_bad_message_raises():
    with expected_protocol(Sentio, [("map:step_next_die", "0,0,OK")]) as inst:
        with pytest.raises(ProberError, match="3 integers"):
            inst.step_next_die()


def test_die_position():
    with expected_protocol(Sentio, [("map:die:get_current_index", "0,0,5,6,7")]) as inst:
        assert inst.die_position() == (6, 7)


def test_die_position_no_die_active():
    with expected_protocol(Sentio, [("map:die:get_current_index", "0,0,No die active")]) as inst:
        with pytest.raises(ProberError, match="No die active"):
            inst.die_position()
