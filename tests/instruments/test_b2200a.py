"""Protocol tests of the Keysight B2200A driver against the command reference (no hardware)."""

from __future__ import annotations

import pytest
from pymeasure.test import expected_protocol

from hil.core.errors import BackendError, ConfigError
from hil.station.model import encode_channel
from instruments.drivers.b2200a import B2200A, parse_channel_list


def test_close_channels():
    with expected_protocol(B2200A, [(":ROUT:CLOS (@10102,10203)", None)]) as inst:
        inst.close_channels([10102, encode_channel(1, 2, 3)])


def test_close_channels_pads_card_zero():
    with expected_protocol(B2200A, [(":ROUT:CLOS (@00102)", None)]) as inst:
        inst.close_channels([encode_channel(0, 1, 2)])


def test_open_channels():
    with expected_protocol(B2200A, [(":ROUT:OPEN (@10102)", None)]) as inst:
        inst.open_channels([10102])


@pytest.mark.parametrize("bad", [[], [10100], [11502], [50102], [100000], [-1], ["10102"]])
def test_invalid_channels_send_nothing(bad):
    with expected_protocol(B2200A, []) as inst:
        with pytest.raises(ConfigError):
            inst.close_channels(bad)
        with pytest.raises(ConfigError):
            inst.open_channels(bad)


def test_invalid_channel_in_list_sends_nothing():
    with expected_protocol(B2200A, []) as inst:
        with pytest.raises(ConfigError, match="output pin 49"):
            inst.close_channels([10102, 10149])


def test_open_card_selects_the_mode_that_numbers_the_card():
    with expected_protocol(
        B2200A,
        [
            (":ROUT:FUNC NCON", None),
            (":ROUT:OPEN:CARD 1", None),
            (":ROUT:FUNC ACON", None),
            (":ROUT:OPEN:CARD 0", None),
        ],
    ) as inst:
        inst.open_card(1)
        inst.open_card(0)


@pytest.mark.parametrize("card", [5, -1, "1"])
def test_open_card_rejects_bad_card(card):
    with expected_protocol(B2200A, []) as inst:
        with pytest.raises(ConfigError):
            inst.open_card(card)
        with pytest.raises(ConfigError):
            inst.closed_channels(card)


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("(@10102,10203)", [10102, 10203]),
        ("10102,10203", [10102, 10203]),
        ("(@10102)", [10102]),
        ("(@)", []),
        ("", []),
    ],
)
def test_closed_channels(reply, expected):
    with expected_protocol(B2200A, [(":ROUT:CLOS:CARD? 1", reply)]) as inst:
        assert inst.closed_channels(1) == expected


def test_closed_channels_garbage_raises():
    with expected_protocol(B2200A, [(":ROUT:CLOS:CARD? 2", "(@10102,abc)")]) as inst:
        with pytest.raises(BackendError, match="unparsable channel list"):
            inst.closed_channels(2)


def test_parse_channel_list_quoted():
    assert parse_channel_list('"(@10102, 10203)"\n') == [10102, 10203]


def test_next_error_no_error():
    with expected_protocol(B2200A, [(":SYST:ERR?", '+0,"No error"')]) as inst:
        assert inst.next_error == (0, "No error")


def test_next_error_with_comma_in_message():
    reply = '-113,"Undefined header, check the command"'
    with expected_protocol(B2200A, [(":SYST:ERR?", reply)]) as inst:
        assert inst.next_error == (-113, "Undefined header, check the command")


@pytest.mark.parametrize("reply", ["garbage", 'x,"No error"'])
def test_next_error_malformed(reply):
    with expected_protocol(B2200A, [(":SYST:ERR?", reply)]) as inst:
        with pytest.raises(BackendError):
            inst.next_error  # noqa: B018


def test_check_errors_reads_until_zero():
    with expected_protocol(
        B2200A,
        [
            (":SYST:ERR?", '-222,"Data out of range"'),
            (":SYST:ERR?", '+0,"No error"'),
        ],
    ) as inst:
        assert inst.check_errors() == [(-222, "Data out of range")]


def test_id_reset_clear():
    idn = "Agilent Technologies,B2201A,0,1.0"
    with expected_protocol(B2200A, [("*IDN?", idn), ("*RST", None), ("*CLS", None)]) as inst:
        assert inst.id == idn
        inst.reset()
        inst.clear()


def test_operation_complete_waits_for_the_relays():
    with expected_protocol(B2200A, [("*OPC?", "1")]) as inst:
        assert inst.operation_complete is True
