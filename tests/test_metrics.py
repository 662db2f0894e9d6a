"""The Prometheus text renderer and the tallies: read back by the reference client's parser."""

from __future__ import annotations

import ipaddress
import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hookline.deliveries import Attempt, DeliveryStatus
from hookline.journeys import FinishReason
from hookline.metrics import (
    Buckets,
    Family,
    Histogram,
    Kind,
    Sample,
    by_label,
    one,
    render,
)
from hookline.netguard import DestinationBlocked
from hookline.store.base import Outcome
from hookline.tallies import BLOCKED_PREFIX, AttemptTally, IngestTally


def parsed(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """Family name -> its samples (name, labels, value), as Prometheus reads them."""
    return {
        f.name: [(s.name, s.labels, s.value) for s in f.samples]
        for f in text_string_to_metric_families(text)
    }


def test_a_counter_and_a_gauge_read_back_with_their_help_type_and_value() -> None:
    text = render(
        [
            one("hookline_things_total", Kind.COUNTER, "Things done.", 3),
            one("hookline_waiting", Kind.GAUGE, "Things waiting.", 1.5),
        ]
    )
    assert text.endswith("\n")
    assert "# HELP hookline_things_total Things done.\n# TYPE hookline_things_total counter\n" in (
        text
    )
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["hookline_things"].type == "counter"
    assert families["hookline_things"].documentation == "Things done."
    assert families["hookline_waiting"].type == "gauge"
    assert parsed(text) == {
        "hookline_things": [("hookline_things_total", {}, 3.0)],
        "hookline_waiting": [("hookline_waiting", {}, 1.5)],
    }


def test_whole_numbers_are_written_without_a_decimal_point() -> None:
    text = render(
        [one("hookline_n", Kind.GAUGE, "n", 7.0), one("hookline_f", Kind.GAUGE, "f", 0.25)]
    )
    assert "hookline_n 7\n" in text
    assert "hookline_f 0.25\n" in text


def test_label_values_and_help_are_escaped_and_read_back_intact() -> None:
    value = 'a "quoted" \\ back\nslash'
    text = render([one("hookline_x", Kind.GAUGE, "Help with \\ and\na new line.", 1, name=value)])
    assert "\n".join(text.splitlines()[:1]) == "# HELP hookline_x Help with \\\\ and\\na new line."
    ((_, labels, number),) = parsed(text)["hookline_x"]
    assert labels == {"name": value}
    assert number == 1.0
    families = list(text_string_to_metric_families(text))
    assert families[0].documentation == "Help with \\ and\na new line."


def test_one_series_per_label_value() -> None:
    text = render(
        [by_label("hookline_a_total", Kind.COUNTER, "a", "outcome", [("ok", 2), ("dead", 0)])]
    )
    assert parsed(text)["hookline_a"] == [
        ("hookline_a_total", {"outcome": "ok"}, 2.0),
        ("hookline_a_total", {"outcome": "dead"}, 0.0),
    ]


def test_histogram_buckets_are_cumulative_and_a_bound_belongs_to_its_own_bucket() -> None:
    h = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        h.observe(value)
    text = render([Family("hookline_t_seconds", Kind.HISTOGRAM, "t", (Sample(h.snapshot()),))])
    samples = parsed(text)["hookline_t_seconds"]
    buckets = {s[1]["le"]: s[2] for s in samples if s[0].endswith("_bucket")}
    assert buckets == {"0.1": 2.0, "1.0": 4.0, "+Inf": 5.0}
    assert 'hookline_t_seconds_bucket{le="1.0"} 4\n' in text
    assert ("hookline_t_seconds_count", {}, 5.0) in samples
    (total,) = [s[2] for s in samples if s[0] == "hookline_t_seconds_sum"]
    assert total == pytest.approx(8.65)


def test_an_empty_histogram_reads_zero_everywhere() -> None:
    text = render(
        [Family("hookline_e_seconds", Kind.HISTOGRAM, "e", (Sample(Histogram().snapshot()),))]
    )
    values = {s[0]: s[2] for s in parsed(text)["hookline_e_seconds"]}
    assert values["hookline_e_seconds_count"] == 0.0
    assert values["hookline_e_seconds_sum"] == 0.0


def test_special_values_are_written_as_prometheus_spells_them() -> None:
    text = render(
        [
            one("hookline_inf", Kind.GAUGE, "i", math.inf),
            one("hookline_nan", Kind.GAUGE, "n", math.nan),
        ]
    )
    assert "hookline_inf +Inf\n" in text
    assert "hookline_nan NaN\n" in text
    assert parsed(text)["hookline_inf"][0][2] == math.inf


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: one("hookline_things", Kind.COUNTER, "x", 1), "must end in _total"),
        (lambda: one("9lives", Kind.GAUGE, "x", 1), "not a valid Prometheus name"),
        (lambda: one("hookline_x", Kind.GAUGE, "x", 1, le="1"), "label name 'le'"),
        (lambda: one("hookline_x", Kind.GAUGE, "x", 1, __name="1"), "label name '__name'"),
        (
            lambda: Family("hookline_x", Kind.GAUGE, "x", (Sample(Histogram().snapshot()),)),
            "histogram has buckets",
        ),
        (lambda: Histogram((1.0, 0.5)), "ascending"),
    ],
)
def test_what_prometheus_would_refuse_is_refused_when_built(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_a_name_rendered_twice_is_refused() -> None:
    twice = [one("hookline_x", Kind.GAUGE, "x", 1), one("hookline_x", Kind.GAUGE, "x", 2)]
    with pytest.raises(ValueError, match="rendered twice"):
        render(twice)


def test_nothing_renders_as_nothing() -> None:
    assert render([]) == ""


# --- tallies ----------------------------------------------------------------------------------


class _Journeys:
    def __init__(self, entered: int, finished: dict[FinishReason, int], cut: int = 0) -> None:
        self.entered = entered
        self.finished = finished
        self.cut_count = cut  # all of them, stored or not


def test_a_commit_counts_new_duplicate_and_emitted_events_apart() -> None:
    tally = IngestTally()
    # 5 received, 2 of them duplicates; 3 new and 4 emitted by journeys were stored.
    tally.committed(5, 2, 7, 6, _Journeys(3, {FinishReason.GOAL: 2}, cut=2))
    tally.committed(1, 0, 1, 1, None)
    assert (tally.events_accepted, tally.events_duplicate, tally.events_emitted) == (4, 2, 4)
    assert tally.deliveries_created == 7
    assert tally.journeys_entered == 3
    assert tally.journeys_finished[FinishReason.GOAL] == 2
    assert set(tally.journeys_finished) == set(FinishReason)  # every reason, from zero
    assert tally.journey_chain_cuts == 2


def _outcome(status: DeliveryStatus, error: str | None = None, ms: float = 20.0) -> Outcome:
    attempt = Attempt("att_1", "dlv_1", 1, 0, ms, None, (), None, error, False)
    return Outcome(attempt, status, None)


def test_attempts_are_counted_by_outcome_and_blocked_ones_apart_from_dead() -> None:
    tally = AttemptTally()
    blocked = str(DestinationBlocked("x.test", ipaddress.ip_address("10.0.0.1"), "private"))
    tally.recorded(
        [
            _outcome(DeliveryStatus.SUCCEEDED, ms=20),
            _outcome(DeliveryStatus.RETRYING, "HTTP 503", ms=300),
            _outcome(DeliveryStatus.DEAD, "HTTP 400", ms=40),
            _outcome(DeliveryStatus.DEAD, blocked, ms=0),
        ]
    )
    assert (tally.succeeded, tally.retrying, tally.dead, tally.blocked) == (1, 1, 1, 1)
    snap = tally.latency.snapshot()
    assert snap.count == 3  # a blocked attempt sent nothing: no latency
    assert snap.sum == pytest.approx(0.36)


def test_the_blocked_prefix_is_what_the_guard_says() -> None:
    error = str(DestinationBlocked("x.test", ipaddress.ip_address("10.0.0.1"), "private"))
    assert error.startswith(BLOCKED_PREFIX)


def test_buckets_count_is_the_sum_of_its_buckets() -> None:
    assert Buckets((1.0,), (2, 3), 4.0).count == 5
