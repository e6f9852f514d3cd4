"""`Meter.serve_metrics` from Python: a Prometheus endpoint whose window histograms sum to
the reports the application got, beside the devices' energy."""

import socket
import time
import urllib.error
import urllib.request

import pytest

import lem

# idle 60 W for the baseline, then 300 W
SCENARIO = {
    "name": "Sim 300",
    "idle_w": 60.0,
    "segments": [{"start_s": 0.5, "end_s": 1e5, "power_w": 300.0}],
}


def scrape(port, path="/metrics"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.headers["Content-Type"], r.read().decode()


def samples(body):
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def one(s, metric, **labels):
    found = [
        v
        for k, v in s.items()
        if k.split("{")[0] == metric and all(f'{l}="{x}"' in k for l, x in labels.items())
    ]
    assert len(found) == 1, (metric, labels, found)
    return found[0]


def test_window_histograms_sum_to_the_reports(scenario):
    m = lem.Meter(
        device=scenario(SCENARIO),
        interval_ms=20,
        baseline="force",
        baseline_duration_s=0.3,
    )
    port = m.serve_metrics(0)
    assert port > 0
    time.sleep(0.3)
    reports = []
    for s in (0.05, 0.1, 0.15):
        with m.scope("request") as sc:
            time.sleep(s)
        reports.append(sc.report)
    g = m.group("batch")
    a = g.start("decode")
    time.sleep(0.05)
    with g.scope("decode") as b:
        time.sleep(0.05)
    shares = [a.finish(), b.report]
    kind, body = scrape(port)
    assert kind.startswith("text/plain; version=0.0.4")
    s = samples(body)
    assert one(s, "lem_window_energy_joules_count", name="request") == 3
    assert one(s, "lem_window_energy_joules_sum", name="request") == pytest.approx(
        sum(r.raw_j for r in reports), rel=1e-9
    )
    assert one(s, "lem_window_active_energy_joules_sum", name="request") == pytest.approx(
        sum(r.adjusted_j for r in reports), rel=1e-9
    )
    assert one(s, "lem_window_duration_seconds_sum", name="request") == pytest.approx(
        sum(r.duration_s for r in reports), rel=1e-9
    )
    # a shared window counts its share: the group's union, not the overlap twice
    got = one(s, "lem_window_energy_joules_sum", name="decode")
    assert got == pytest.approx(sum(r.shared_j for r in shares), rel=1e-9)
    assert got == pytest.approx(g.summary()["union_j"], rel=1e-6)
    # every series says it is simulated; the device's power and baseline beside them
    assert one(s, "lem_gpu_power_watts", gpu="0", simulated="true") == 300.0
    assert one(s, "lem_gpu_idle_power_watts", gpu="0") == pytest.approx(60.0, abs=0.5)
    with pytest.raises(urllib.error.HTTPError) as e:
        scrape(port, "/nope")
    assert e.value.code == 404
    m.stop_metrics()


def test_a_port_in_use_and_bad_buckets_are_clear_errors(scenario):
    m = lem.Meter(device=scenario(SCENARIO), baseline="off")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(lem.LemError, match=f"127.0.0.1:{port}: cannot listen"):
            m.serve_metrics(port)
    with pytest.raises(lem.ConfigError, match="energy_buckets"):
        m.serve_metrics(0, energy_buckets=[1.0, 0.5])
    # custom buckets are the histogram's
    port = m.serve_metrics(0, energy_buckets=[1.0, 10.0, 100.0])
    with m.scope("w"):
        time.sleep(0.02)
    _, body = scrape(port)
    s = samples(body)
    for le in ("1.0", "10.0", "100.0", "+Inf"):
        one(s, "lem_window_energy_joules_bucket", name="w", le=le)
    assert not any('le="0.1"' in k for k in s), "the default buckets are gone"
    m.stop_metrics()
