"""Pure logic of the mixed-workload benchmark: parsing the mix, splitting workers, validating params."""

from __future__ import annotations

import pytest

from robolake.bench.mixed import DEFAULT_MIX, MixedParams, parse_mix, split_workers
from robolake.errors import ConfigError


def test_parse_mix() -> None:
    assert parse_mix("loader=12,stream=2,upload=2,list=1") == DEFAULT_MIX
    assert parse_mix(" loader = 3 , list=1, ") == {"loader": 3, "list": 1}
    assert parse_mix("loader=1,stream=0") == {"loader": 1, "stream": 0}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("loaders=2", "unknown kind 'loaders'; choose from loader, stream, upload, list"),
        ("loader=two", "weight 'two' of 'loader' is not a whole number"),
        ("loader", "'loader' is not KIND=WEIGHT"),
        ("loader=1,loader=2", "'loader' is given twice"),
        ("loader=0,list=0", "every weight is 0"),
        ("", "every weight is 0"),
        ("loader=-1", "must be 0..1024"),
    ],
)
def test_parse_mix_errors_name_the_value(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="--mix") as caught:
        parse_mix(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (16, {"loader": 11, "stream": 2, "upload": 2, "list": 1}),
        (32, {"loader": 22, "stream": 4, "upload": 4, "list": 2}),  # largest remainders: list, stream, upload
        (4, {"loader": 1, "stream": 1, "upload": 1, "list": 1}),
        (2, {"loader": 1, "stream": 1, "upload": 1, "list": 1}),  # below the number of kinds: one each
        (5, {"loader": 2, "stream": 1, "upload": 1, "list": 1}),
    ],
)
def test_split_workers(level: int, expected: dict[str, int]) -> None:
    assert split_workers(DEFAULT_MIX, level) == expected


def test_split_workers_keeps_the_total_and_skips_zero_weights() -> None:
    for level in range(1, 70):
        split = split_workers({"loader": 5, "stream": 0, "list": 3}, level)
        assert set(split) == {"loader", "list"} and min(split.values()) >= 1
        assert sum(split.values()) == max(level, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mix": {"readers": 1}}, "unknown kinds ['readers']"),
        ({"small_objects": 1}, "small objects 1"),
        ({"videos": 0}, "0 videos"),
        ({"episode_video_bytes": -1}, "episode video chunk -1 bytes"),
        ({"paths": ("direct", "proxy")}, "paths ('direct', 'proxy')"),
        ({"paths": ()}, "paths ()"),
    ],
)
def test_params_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        MixedParams(**kwargs)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_a_report_without_series_has_no_figures() -> None:
    """`bench accelerator --parts cold,large` measures no concurrency sweep: its report has tables only."""
    from robolake.bench import report

    assert report.plots({"series": []}, "accelerator") == {}
