"""Sizes and durations: the forms people write, and clear refusals."""

import pytest

from helios.units import UnitError, format_duration, format_size, parse_duration, parse_size

MIB = 1024 * 1024


@pytest.mark.parametrize(("text", "expected"), [
    ("64M", 64 * MIB), ("64m", 64 * MIB), ("64MB", 64 * MIB), ("64Mi", 64 * MIB),
    ("512MiB", 512 * MIB), ("1Gi", 1024 * MIB), ("1G", 1024 * MIB), ("2k", 2048),
    ("1.5G", 1536 * MIB), ("100", 100), ("100b", 100), (4096, 4096), (0, 0), (2.0, 2),
    (" 8 M ", 8 * MIB), ("1T", 1024**4),
])
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["64Q", "", "M", "-1", "1.5", "1..2G", True, None, [], -5,
                                 1.5, "64 Mo"])
def test_bad_sizes_name_the_input(bad):
    with pytest.raises(UnitError) as e:
        parse_size(bad)
    assert "size" in str(e.value)


def test_size_error_quotes_text():
    with pytest.raises(UnitError, match=r'^"64Q" is not a size'):
        parse_size("64Q")


@pytest.mark.parametrize(("text", "expected"), [
    ("1s", 1.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), ("1h30m", 5400.0),
    ("1.5s", 1.5), ("10", 10.0), (3, 3.0), (0.25, 0.25), ("0", 0.0), ("250us", 0.00025),
    ("1d", 86400.0), (" 5s ", 5.0),
])
def test_durations(text, expected):
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["forever", "", "1x", "s", "-1s", "1s2", "1 s", -1, True,
                                 None, float("inf")])
def test_bad_durations(bad):
    with pytest.raises(UnitError, match="duration"):
        parse_duration(bad)


def test_formatting_round_trips():
    assert format_size(512 * MIB) == "512 MiB"
    assert format_size(1536 * MIB) == "1.5 GiB"
    assert format_size(100) == "100 B"
    for secs in (0.5, 1.0, 90.0, 300.0, 5400.0, 3.25, 0.0):
        assert parse_duration(format_duration(secs)) == pytest.approx(secs)
