"""Whose joules: a scope's share of a shared simulated GPU, by SM utilisation (the scenario's
`processes` block), attributed to the calling process or to the pids it names."""

import os
import time

import pytest

import lem

# A pid no Linux host has (pid_max is at most 2^22): someone else's process.
OTHER = 4_194_400


def shared(procs=None, support="supported"):
    """Idle 60 W, 260 W from 0.5 s (after the 0.3 s baseline); this process at 60 % SM and
    OTHER at 20 % all along, sampled by the driver every 50 ms."""
    if procs is None:
        procs = [("self", 60.0), (OTHER, 20.0)]
    return {
        "name": "Shared",
        "idle_w": 60.0,
        "segments": [{"start_s": 0.5, "end_s": 1e6, "power_w": 260.0}],
        "processes": {
            "sample_ms": 50,
            "support": support,
            "list": [
                {
                    "pid": pid,
                    "command": "job",
                    "segments": [{"start_s": 0, "end_s": 1e6, "sm_pct": sm, "memory_mb": 512}],
                }
                for pid, sm in procs
            ],
        },
    }


def meter(spec):
    m = lem.Meter(device=spec, baseline="force", baseline_duration_s=0.3, interval_ms=20)
    assert m.baselines[0]["power_w"] == pytest.approx(60.0, rel=1e-3)
    time.sleep(0.3)  # past the idle start: 260 W from here on
    return m


def window(m, **kw):
    with m.scope("w", **kw) as s:
        time.sleep(0.6)
    return s.report


def sums_add_up(r):
    a = r.attribution
    active = a["active_j"]
    assert active == pytest.approx(r.adjusted_j, rel=1e-9)
    assert a["idle_j"] + active == pytest.approx(r.raw_j, rel=1e-9)
    parts = a["self_active_j"] + a["others_active_j"] + a["unattributed_active_j"]
    assert parts == pytest.approx(active, rel=1e-9)
    per_process = sum(p["active_j"] for p in a["processes"])
    assert per_process + a["unattributed_active_j"] == pytest.approx(active, rel=1e-9)
    # 200 W above idle over the window
    assert active == pytest.approx(200.0 * r.duration_s, rel=0.02)


def test_a_scope_is_attributed_to_the_calling_process_by_default(scenario):
    r = window(meter(scenario(shared())))
    a = r.attribution
    assert a["method"] == "sm_utilization_share"
    assert a["measured_pids"] == [os.getpid()]
    sums_add_up(r)
    # 60 % of the 80 % the two processes use
    assert a["self_active_j"] / a["active_j"] == pytest.approx(0.75, abs=0.05)
    assert a["self_uncertainty_j"] >= 0.0
    me = [p for p in a["processes"] if p["measured"]]
    assert [p["pid"] for p in me] == [os.getpid()]
    assert me[0]["sm_share"] == pytest.approx(0.75, abs=0.05)
    for key in ("pid", "command", "device", "sm_share", "active_j"):
        assert key in me[0], key
    assert any("other processes used the GPU" in w for w in r.warnings), r.warnings
    assert r.to_dict()["attribution"] == a


def test_a_scope_can_name_the_processes_it_is_attributed_to(scenario):
    m = meter(scenario(shared()))
    r = window(m, pids=OTHER)
    a = r.attribution
    assert a["measured_pids"] == [OTHER]
    sums_add_up(r)
    assert a["self_active_j"] / a["active_j"] == pytest.approx(0.25, abs=0.05)
    assert any(f"pid {os.getpid()}" in w for w in r.warnings), r.warnings

    # an iterable of pids, through start()
    s = m.start("w2", pids={OTHER, 4_194_401})
    assert s.pids is not None and sorted(s.pids) == [OTHER, 4_194_401]
    time.sleep(0.3)
    assert sorted(s.finish().attribution["measured_pids"]) == [OTHER, 4_194_401]

    # renamed while open
    s = m.start("w3")
    assert s.pids is None
    s.attribute_to([OTHER])
    time.sleep(0.3)
    assert s.finish().attribution["measured_pids"] == [OTHER]

    # and before it opens
    s = m.scope("w4")
    s.attribute_to((OTHER,))
    with s:
        time.sleep(0.3)
    assert s.report.attribution["measured_pids"] == [OTHER]


def test_bad_pids_are_config_errors_naming_the_problem(scenario):
    m = lem.Meter(device=scenario(shared()), baseline="off")
    cases = [
        ("1234", "expected a pid or an iterable of pids, got str"),
        (1.5, "expected a pid or an iterable of pids, got float"),
        ([1, -3], "-3 is not a pid"),
        (0, "0 is not a pid"),
        ([], "empty"),
    ]
    for pids, want in cases:
        for open_scope in (m.scope, m.start):
            with pytest.raises(lem.ConfigError) as e:
                open_scope("w", pids=pids)
            msg = str(e.value)
            assert msg.startswith("invalid pids: ") and want in msg, msg
            assert "\n" not in msg
    s = m.start("w")
    with pytest.raises(lem.ConfigError):
        s.attribute_to("x")
    s.finish()
    with pytest.raises(lem.LemError, match="already finished"):
        s.attribute_to(OTHER)
    # None is the default: the calling process
    with m.scope("w", pids=None) as s:
        pass
    assert s.report.attribution["measured_pids"] == [os.getpid()]


def test_no_attribution_where_no_device_lists_processes(scenario):
    m = lem.Meter(device=scenario({"idle_w": 100.0}), baseline="off", interval_ms=20)
    with m.scope("w", pids=[OTHER]) as s:
        time.sleep(0.05)
    assert s.report.attribution is None
    assert s.report.to_dict().get("attribution") is None


def test_not_supported_is_unavailable_with_a_reason(scenario):
    r = window(meter(scenario(shared(support="not_supported"))))
    a = r.attribution
    assert a["method"] == "unavailable"
    assert "NOT_SUPPORTED" in a["reason"]
    assert a["self_active_j"] is None and a["active_j"] is None
    assert any("other processes used the GPU" in w for w in r.warnings), r.warnings
