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
