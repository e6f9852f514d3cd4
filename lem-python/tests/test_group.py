"""Shared windows from Python on simulated devices: shares that add up to the union."""

import json
import threading
import time

import pytest

import lem

CONSTANT = {"name": "Sim 250 W", "idle_w": 250.0}


def meter(spec, **kw):
    kw.setdefault("baseline", "off")
    kw.setdefault("interval_ms", 20)
    return lem.Meter(device=spec, **kw)


def test_overlapping_scopes_share_and_add_up(scenario):
    m = meter(scenario(CONSTANT))
    g = m.group("requests")
    assert isinstance(g, lem.Group)
    a = g.start("a")
    time.sleep(0.04)
    with g.scope("b") as b:
        b.add_weight(5)
        time.sleep(0.04)
    ra = a.finish()
    rb = b.report
    for r in (ra, rb):
        assert r.shared_j is not None
        assert r.shared_j <= r.raw_j * (1 + 1e-9)
        assert r.shared_uncertainty_j >= 0
    s = g.summary()
    assert s["name"] == "requests"
    assert s["windows"] == 2
    assert ra.shared_j + rb.shared_j == pytest.approx(s["union_j"], rel=1e-9)
    assert s["shares_sum_j"] == pytest.approx(s["union_j"], rel=1e-9)
    # the union is a's lifetime: 250 W over it (a few ms of reads aside)
    assert s["union_j"] == pytest.approx(250.0 * ra.duration_s, rel=0.05)
    assert s["per_window_j"]["p50"] > 0
    assert s["per_weight_j"] == pytest.approx(s["union_j"] / 5, rel=1e-9)
    assert m.groups[0]["windows"] == 2
    # an ordinary window has no share
    with m.scope("plain") as p:
        pass
    assert p.report.shared_j is None


def test_groups_go_into_the_result_file(scenario, tmp_path):
    m = meter(scenario(CONSTANT))
    g = m.group("requests")
    with m.scope("run") as run:
        for i in range(3):
            with g.scope(f"r{i}"):
                time.sleep(0.01)
    out = tmp_path / "r.json"
    m.save(run.report, out, "exp")
    v = json.loads(out.read_text())
    grp = v["groups"][0]
    for k in ("name", "windows", "union_j", "union_uncertainty_j", "shares_sum_j",
              "gaps_s", "per_window_j", "per_weight_j"):
        assert k in grp
    assert grp["windows"] == 3
    assert grp["per_weight_j"] is None
    assert grp["gaps_s"] > 0


def test_bad_weights_and_reuse_are_errors(scenario):
    m = meter(scenario(CONSTANT))
    g = m.group("requests")
    s = g.start("a")
    with pytest.raises(lem.LemError, match="weight"):
        s.add_weight(-1)
    s.finish()
    with pytest.raises(lem.LemError, match="already finished"):
        s.finish()
    with pytest.raises(lem.LemError, match="not open"):
        s.add_weight(1)


def test_scopes_from_threads_add_up(scenario):
    m = meter(scenario(CONSTANT))
    g = m.group("requests")
    shares = []
    lock = threading.Lock()

    def worker():
        for _ in range(10):
            with g.scope("t") as s:
                s.add_weight(1)
                time.sleep(0.001)
            with lock:
                shares.append(s.report.shared_j)

    ts = [threading.Thread(target=worker) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    s = g.summary()
    assert s["windows"] == 80
    assert sum(shares) == pytest.approx(s["union_j"], rel=1e-9)
