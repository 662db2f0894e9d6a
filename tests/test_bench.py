"""The benchmark's verdicts: each target measured against the reference it names.

Synthetic results only: these tests check the arithmetic and the wording, never a timing.
"""

from __future__ import annotations

from typing import Any

import pytest
from bench import report
from bench.hookline_run import HooklineSetup
from bench.load import first_seqs
from bench.procs import inherited
from bench.steps import STEPS, Skipped

DEFAULTS = "default settings"
NORMAL = "HOOKLINE_SQLITE_SYNCHRONOUS=NORMAL (not the default)"


def sweep(client: str, curve: dict[int, float]) -> dict[str, Any]:
    best = max(curve, key=lambda c: curve[c])
    return {
        "client": client,
        "seconds_per_point": 6.0,
        "deliveries_per_s_steady": curve[best],
        "best_concurrency": best,
        "curve": {str(c): v for c, v in curve.items()},
    }


def e2e(rate: float, settings: str = DEFAULTS) -> dict[str, Any]:
    return {
        "settings": settings,
        "load_seconds": 30.0,
        "deliveries_per_s_steady": rate,
        "deliveries_per_s_total": rate,
        "deliveries_expected": 100,
        "deliveries_received": 100,
        "duplicates": 0,
        "ingest": {"events_per_s_steady": 2 * rate},
        "deliveries_per_second_series": [],
        "accepted_per_second_series": [],
    }


def reaction(p50: float, p99: float, settings: str = DEFAULTS) -> dict[str, Any]:
    lat = {"p50": p50, "p95": p99, "p99": p99, "max": p99}
    return {
        "settings": settings,
        "offered_events_per_s": 5_000.0,
        "latency_from_send_ms": lat,
        "latency_from_202_ms": lat,
        "samples": 1000,
        "warmup_s": 3.0,
        "arrived_before_202": 0,
    }


def scale(rate: float) -> dict[str, Any]:
    return {"settings": DEFAULTS, "throughput": e2e(rate), "reaction": None}


def results(**runs: Any) -> dict[str, Any]:
    return {
        "machine": {
            "date": "2026-01-01T00:00:00+00:00",
            "cores": 2,
            "python": "3.11",
            "git_commit": "0" * 40,
            "git_dirty_src": False,
        },
        "command": "python -m bench",
        "quick": False,
        "counts": {"extra_rules": [1_000, 10_000], "many_users": 1_000_000, "many_dests": 1_000},
        "users": 10_000,
        "hookline_defaults": {"max_per_host": 32},
        "hookline_env": {"HOOKLINE_ALLOWED_NETWORKS": "127.0.0.0/8"},
        **runs,
    }


def verdicts(res: dict[str, Any]) -> dict[tuple[str, str], report.Target]:
    return {(t.settings, t.target): t for t in report.targets(res)}


def test_e2e_is_judged_against_aiohttps_best_point_of_the_sweep_not_its_256_point() -> None:
    res = results(
        limit_aiohttp=sweep("aiohttp", {16: 17_000, 32: 18_000, 256: 9_000}),
        e2e_batch_full=e2e(12_000),
    )
    target = verdicts(res)[(DEFAULTS, "e2e batches of 100 >= aiohttp's best")]
    assert target.measured == "66.7%"
    assert target.met is False
    assert target.mark == "missed"
    assert "18,000 req/s at 32 in flight" in target.reference


def test_e2e_at_aiohttps_best_is_met_and_pyreqwest_is_informational() -> None:
    res = results(
        limit_aiohttp=sweep("aiohttp", {16: 17_000, 32: 18_000}),
        limit_pyreqwest=sweep("pyreqwest", {16: 41_000, 64: 40_000}),
        e2e_batch_full=e2e(18_000),
    )
    found = verdicts(res)
    assert found[(DEFAULTS, "e2e batches of 100 >= aiohttp's best")].mark == "met"
    info = found[(DEFAULTS, "e2e batches of 100 vs pyreqwest's best (aiohttp's is about 40%)")]
    assert info.mark == "info"
    assert info.measured == "43.9%"


def test_a_reference_not_measured_leaves_its_target_not_measured() -> None:
    found = verdicts(results(e2e_batch_full=e2e(5_000)))
    target = found[(DEFAULTS, "e2e batches of 100 >= aiohttp's best")]
    assert target.mark == "not measured"
    assert target.reference == "aiohttp's best: not measured"


def test_single_event_requests_need_half_the_batch_figure() -> None:
    res = results(e2e_batch_full=e2e(10_000), e2e_single_full=e2e(4_999))
    target = verdicts(res)[(DEFAULTS, "e2e one event per request >= 50% of batches")]
    assert target.met is False
    res["e2e_single_full"] = e2e(5_000)
    assert verdicts(res)[(DEFAULTS, "e2e one event per request >= 50% of batches")].met


def test_reaction_is_judged_from_send_on_p50_and_p99() -> None:
    res = results(e2e_batch_full=e2e(10_000), reaction_full=reaction(p50=4.9, p99=25.0))
    found = verdicts(res)
    assert found[(DEFAULTS, "reaction from send, p50 < 5 ms at half load")].met is True
    assert found[(DEFAULTS, "reaction from send, p99 < 25 ms at half load")].met is False


def test_a_thousand_destinations_need_half_of_one_destination() -> None:
    res = results(scale_baseline=scale(8_000), scale_dests_1000=scale(3_900))
    target = verdicts(res)[(DEFAULTS, "1,000 destinations >= 50% of one")]
    assert target.measured == "48.8%"
    assert target.met is False


def test_figures_with_other_settings_are_grouped_under_a_line_naming_them() -> None:
    res = results(e2e_batch_full=e2e(10_000), e2e_batch_normal=e2e(11_000, settings=NORMAL))
    text = report.table(res)
    assert "hookline, default settings" in text
    assert f"hookline, {NORMAL}" in text
    assert f"Targets, {NORMAL}:" in text
    assert (NORMAL, "e2e batches of 100 >= aiohttp's best") in verdicts(res)


def test_the_table_shows_each_references_curve_and_its_best() -> None:
    res = results(
        limit_aiohttp=sweep("aiohttp", {16: 17_000, 256: 9_000}),
        limit_pyreqwest=sweep("pyreqwest", {16: 41_000, 256: 30_000}),
    )
    text = report.table(res)
    assert "17,000" in text
    assert "9,000" in text
    assert "41,000 req/s at 16 in flight" in text


def test_only_runs_the_named_steps_and_groups_expand() -> None:
    skipped = Skipped(only="e2e-batch,limit")
    assert "e2e-batch" not in skipped
    assert "limit-aiohttp" not in skipped
    assert "limit-pyreqwest" not in skipped
    assert "reaction" in skipped
    assert skipped.partial


def test_skip_leaves_out_a_step_and_nothing_else() -> None:
    skipped = Skipped(skip="scaling")
    assert {s for s in STEPS if s in skipped} == {"scale-rules", "scale-users", "scale-dests"}
    assert not Skipped().partial


def test_an_unknown_step_name_is_refused_with_the_known_names() -> None:
    with pytest.raises(ValueError, match=r"no step is called 'e2e_batch'.*e2e-batch"):
        Skipped(only="e2e_batch")


def test_a_setup_without_overrides_says_default_settings() -> None:
    setup = HooklineSetup()
    assert setup.settings_label() == DEFAULTS
    changed = setup.with_overrides(HOOKLINE_SQLITE_SYNCHRONOUS="NORMAL")
    assert changed.settings_label() == NORMAL


def test_hookline_children_do_not_inherit_the_shells_hookline_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOOKLINE_MAX_PER_HOST", "256")
    monkeypatch.setenv("BENCH_KEEP_ME", "1")
    env = inherited("HOOKLINE_")
    assert "HOOKLINE_MAX_PER_HOST" not in env
    assert env["BENCH_KEEP_ME"] == "1"


def test_a_counted_burst_sends_exactly_its_events_in_batches() -> None:
    assert list(first_seqs(10, 250, 100, seconds=0.0)) == [10, 110, 210]


def test_a_run_with_hookline_env_says_none_of_its_figures_is_at_default_settings() -> None:
    res = results(hookline_overrides={"HOOKLINE_MAX_PER_HOST": "256"})
    text = report.table(res)
    assert "HOOKLINE_MAX_PER_HOST=256 (--hookline-env)" in text
    assert "none of its figures is at default settings" in text


def test_journey_targets_join_the_verdicts_only_when_a_journey_step_ran() -> None:
    assert not [t for t in report.targets(results()) if "journey" in t.target]
    res = results(journey_throughput={"share_of_rule_path": 0.6})
    journey = [t for t in report.targets(res) if "journey deliveries/s" in t.target]
    assert [(t.settings, t.target, t.mark) for t in journey] == [
        (DEFAULTS, "journey deliveries/s >= 50% of the rule path", "met")
    ]
