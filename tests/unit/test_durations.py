from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import BaseModel, ValidationError

from kappa import durations
from kappa.durations import Duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2 minutes", timedelta(minutes=2)),
        ("5 seconds", timedelta(seconds=5)),
        ("1 second", timedelta(seconds=1)),
        ("15m", timedelta(minutes=15)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("7d", timedelta(days=7)),
        ("PT2M", timedelta(minutes=2)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("120", timedelta(seconds=120)),
        (" 90 ", timedelta(seconds=90)),
        (1.5, timedelta(seconds=1.5)),
        (timedelta(hours=1), timedelta(hours=1)),
        ("-5m", timedelta(minutes=-5)),
    ],
)
def test_parse_reads_every_accepted_form(text: str | float, expected: timedelta) -> None:
    assert durations.parse(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "2 fortnights", "PT", "m5"])
def test_parse_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="cannot read duration"):
        durations.parse(text)


@pytest.mark.parametrize("text", ["0", "0s", "-1m"])
def test_parse_positive_refuses_zero_and_negative(text: str) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        durations.parse_positive(text)


@pytest.mark.parametrize(
    ("duration", "spark"),
    [
        (timedelta(minutes=2), "120 seconds"),
        (timedelta(minutes=30), "1800 seconds"),
        (timedelta(seconds=1.5), "1500 milliseconds"),
        (timedelta(microseconds=7), "7 microseconds"),
    ],
)
def test_to_spark_gives_an_exact_interval_string(duration: timedelta, spark: str) -> None:
    assert durations.to_spark(duration) == spark


def test_a_duration_field_reads_text_and_refuses_zero() -> None:
    class Model(BaseModel):
        delay: Duration

    assert Model(delay="2 minutes").delay == timedelta(minutes=2)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="must be positive"):
        Model(delay="0 seconds")  # type: ignore[arg-type]


def test_a_renamed_duration_variable_is_refused_with_its_new_name(
    clean_env: pytest.MonkeyPatch,
) -> None:
    from kappa.exceptions import SettingsError
    from kappa.settings import get_settings

    clean_env.setenv("KAPPA_TRAINING_HORIZON_MINUTES", "30")
    with pytest.raises(
        SettingsError, match="KAPPA_TRAINING_HORIZON_MINUTES is now KAPPA_TRAINING_HORIZON"
    ):
        get_settings()


def test_duration_settings_read_text_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    from kappa.settings import get_settings

    clean_env.setenv("KAPPA_FEATURES_WATERMARK_DELAY", "PT90S")
    clean_env.setenv("KAPPA_TRAINING_HORIZON", "1h")
    settings = get_settings()
    assert settings.features.watermark_delay == timedelta(seconds=90)
    assert settings.training.horizon == timedelta(hours=1)
