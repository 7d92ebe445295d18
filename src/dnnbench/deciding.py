"""`recommend --measure`: the candidates measured on this machine only as far as they decide the answer
(the rule is `analysis.search.decide`; here its predictor and its measurer: `profiling.predict` and
sweeps of `runner`, into the database at ``path``)."""

from __future__ import annotations

import sys

from .errors import UserError


def measure_to_decide(path, limits, entries: list, setup, quick: bool, progress: bool, open_store,
                      say=None, on_busy: str = "wait") -> list:
    """Measure, in ``setup``, the candidates (``entries``) that decide the answer to ``limits``: the
    steps taken (`analysis.search.Step`). ``open_store(writable)`` opens the database at ``path``."""
    from .analysis import predictor, search
    from .analysis.data import load
    from .analysis.recommend import recommend
    from .profiling import predict, profiles
    from .runner.plan import RunConfig
    from .runner.sweep import sweep_and_read
    from .zoo import published_accuracy

    batch = limits.batch_size
    max_latency = limits.max_latency if limits.max_latency is not None else batch / limits.min_fps

    def measured_here() -> dict:
        try:
            with open_store(False) as store:
                return {m.model: m for m in load(store) if m.setup == setup and batch in m.ok}
        except UserError:  # no measurement in the database yet
            return {}

    def passes(name: str) -> bool | None:
        m = measured_here().get(name)
        return None if m is None else bool(recommend([m], limits)[0])

    def measure_many(names: list[str]) -> list[bool]:
        chosen = [e for e in entries if e.name in names]
        config = RunConfig(batch_sizes=(batch,), setups=(setup,), quick=quick, on_busy=on_busy)
        with open_store(True) as store:
            sweep_and_read(store, config, chosen, ["recommend", "--measure", *names], sys.stderr, progress)
        return [bool(passes(name)) for name in names]

    with open_store(True) as store:
        got, _ = profiles([(e.name, e.input_size, batch) for e in entries], store)
    candidates = []
    for e in entries:
        accuracy = published_accuracy(e)
        profile = got.get((e.name, e.input_size, batch))
        candidates.append(search.Candidate(e.name, accuracy.top1 if accuracy else None,
                                           profile.get("weights_bytes") if profile else None,
                                           predictor.features(profile)["macs"] if profile else None))

    def predict_one(name: str):
        calibrating = list(measured_here().values())
        if len(calibrating) < predictor.MIN_POINTS:
            return None
        entry = next(e for e in entries if e.name == name)
        with open_store(True) as store:
            result = predict(store, calibrating, [entry], [entry], setup, batch, "kernels", on_busy=on_busy, say=say)
        row = result["rows"][0]
        if "problem" in row or row.get("busy"):  # a prediction taken on a busy machine decides nothing
            return None
        return row["latency_s"], row["low_s"], row["high_s"]

    _, steps = search.decide(candidates, max_latency=max_latency, max_memory=limits.max_memory,
                             predict=predict_one, measure=lambda name: measure_many([name])[0], measured=passes,
                             calibrated=lambda: len(measured_here()), min_calibration=predictor.MIN_POINTS,
                             measure_many=measure_many)
    return steps


def serve_to_decide(entries: list, setup, policy, q: float, limit_s: float, qps: float,
                    max_memory: float | None, open_store, serve_one) -> list:
    """Serve, in ``setup`` under ``policy``, the candidates (``entries``) that decide the answer to a
    load of ``qps`` with its ``q``-percentile under ``limit_s`` (`analysis.search.decide_serving`):
    the steps taken. ``serve_one(name)`` searches one model's peak into the database."""
    from .analysis import search
    from .analysis.data import load
    from .analysis.serving import group, peak
    from .zoo import published_accuracy

    def read():
        try:
            with open_store(False) as store:
                return store.serving(), load(store), {(m["model"]): m.get("file_size") for m in store.models()}
        except UserError:  # no database yet
            return [], [], {}

    def meets(name: str) -> bool | None:
        points, _, _ = read()
        ours = [s for s in group(points) if s.model == name and s.setup == setup
                and (s.max_batch, s.max_wait_s, s.instances) == (policy.max_batch, policy.max_wait_s, policy.instances)]
        tried = [s for s in ours if any(p.get("q") is not None and abs(p["q"] - q) < 1e-9 and p.get("limit_s")
                                        and abs(p["limit_s"] - limit_s) < 1e-9 for p in s.points)]
        if not tried:
            return None
        found = peak(tried[0], q, limit_s)
        memory = found.point.get("mem_peak_bytes") if found.point else None
        return bool(found.qps is not None and found.qps >= qps and not (max_memory and memory and memory > max_memory))

    def throughput(name: str) -> float | None:
        _, measured, _ = read()
        cells = [c for m in measured if m.model == name and m.setup == setup
                 for b, c in m.ok.items() if b <= policy.max_batch and c.get("latency_ci_low_s")]
        return max((c["batch_size"] / c["latency_ci_low_s"] for c in cells), default=None)

    def measure(name: str) -> bool:
        serve_one(name)
        return bool(meets(name))

    _, _, sizes = read()
    candidates = []
    for e in entries:
        accuracy = published_accuracy(e)
        candidates.append(search.Candidate(e.name, accuracy.top1 if accuracy else None, sizes.get(e.name)))
    _, steps = search.decide_serving(candidates, qps=qps, max_memory=max_memory, measured=meets, measure=measure,
                                     throughput=throughput)
    return steps
