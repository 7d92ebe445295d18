"""The server scenario: one worker serves one model in one setup under Poisson arrivals, batched by a
policy (``measure.serving.Policy``), and finds the highest rate whose tail latency stays under the
limit (or measures the rates it is given).

A load thread issues requests at the scheduled times of a Poisson process; each instance (a thread
with the prepared model; instances share the model and the cores) takes the oldest waiting requests
when the batch is full or the oldest has waited the policy's longest wait, and runs them padded to
the nearest batch size prepared (as a server with static shapes does). The first instance runs in
the worker's main thread (a forward pass from another Python thread runs slower on CPU). A request's latency runs
from its scheduled arrival to the end of its batch, so a load thread that falls behind never hides
queueing. The load thread's CPU time is measured and reported.

Each point (a rate) runs only until its tail is decided (``measure.serving.verdict``: the 95% bound
of the percentile on one side of the limit), or a backlog shows it cannot keep up, or its time is
spent. The search starts from the capacity the batch latencies measured here predict, and bisects.

Records: ``stage``, ``service`` (each prepared batch size's latency, seconds), ``placement`` (whether
the load generator has a core of its own), ``point`` (one rate's figures), ``again`` (a point disturbed
by other processes, served again), ``wait``/``start`` (waiting for a quiet machine), ``peak`` (the search's answer),
``fatal`` (the model could not be built or prepared).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from . import ChannelLost, one_line

TORCH = True
RESOLUTION = 0.05  # the search stops when the peak is known to within this fraction
MAX_POINTS = 8
# the search's steps away from the prediction until the verdict turns: small first (the prediction is
# usually near), growing where it was far off
STEPS = (1.06, 1.25, 2.0)
MIN_POINT_S = 1.0  # a point runs at least this long (and for the requests a bound needs)
# An undecided point may gather this many times the requests a bound needs (p99: 897, which bear 3
# requests over the limit; 299 bear none, so one stall of the machine leaves a point open): serving on
# at the same rate decides it, where a lower rate starts again from no requests and meets the same
# stalls (squeezenet1_1 ended open at 36, 34 and 27 requests/s, each on a stall or two)
OPEN_REQUESTS = 3.0
BACKLOG_LIMITS = 20  # waiting longer than this many latency limits: the rate cannot be kept up
MIN_FAIL = 10  # requests a point serves at least before it may be called a fail
# a verdict waits until the point has served this many relaxation times of its queue (`settled`): the
# bias of a queue started empty decays about as exp(-t / relaxation time)
RELAXATIONS = 5.0
# The peak found is served again, for the search's time left (up to CONFIRM_S), where at least
# CONFIRM_MIN_S are left: a short point can pass in one of the machine's fast phases (they last 20 to
# 60 s here), which a long run at the same rate does not (mobilenet_v3_large: 51.8 requests/s found,
# LoadGen's 300 s INVALID at 36)
CONFIRM_S = 30.0
CONFIRM_MIN_S = 10.0
# after a point's last arrival: its passes in flight, its verdict, the worker's exit and the sweep's last
# write (0.6 to 0.9 s: resnet18 at 40 requests/s, mobilenet_v3_large at 90): the search stops this much
# before its budget
WIND_DOWN_S = 1.0


def run(spec: dict, emit) -> int:
    try:
        _serve(spec, emit)
    except ChannelLost:
        raise
    except (Exception, SystemExit) as exc:
        emit("fatal", error=one_line(exc))
    return 0


def batch_sizes(max_batch: int) -> list[int]:
    """The batch sizes prepared: powers of two up to ``max_batch``, and ``max_batch``."""
    sizes = {1, max_batch}
    b = 2
    while b < max_batch:
        sizes.add(b)
        b *= 2
    return sorted(sizes)


def _serve(spec: dict, emit) -> None:
    from ..measure import memory
    from ..measure.serving import Policy, capacity, predicted_peak, samples_for_a_bound
    from .latency import BusyWatch, _prepare, built_model

    # the search's budget counts from the sweep's start on this model: its checks, the worker's start, the build,
    # preparation and service times included, and the last point's end (`WIND_DOWN_S`) kept inside it
    began = (time.monotonic() - max(0.0, time.time() - float(spec.get("search_from") or time.time()))
             - WIND_DOWN_S)
    setup, policy = spec["setup"], Policy(**spec["policy"])
    model, make_input = built_model(spec, lambda name: emit("stage", stage=name))
    sizes = batch_sizes(policy.max_batch)
    forwards, inputs = {}, {}
    for b in sizes:
        forwards[b], _, _ = _prepare(model, setup, make_input, b)
        inputs[b] = make_input(b)
    del model
    memory.release_free_memory()  # freed memory is kept for speed (`measure.memory`): the model's goes back
    emit("stage", stage="service")
    service = {b: _service_times(forwards[b], inputs[b]) for b in sizes}
    median = {b: sorted(t)[len(t) // 2] for b, t in service.items()}
    emit("service", seconds={str(b): s for b, s in median.items()})
    watch = BusyWatch(spec.get("busy") or {}, int(setup["threads"]), setup["device"], emit)
    apart = cores_apart(int(setup["threads"]) * policy.instances)
    emit("placement", load_apart=apart is not None)
    server = Server(forwards, inputs, policy, apart, reference=median)
    q, limit = float(spec["percentile"]), float(spec["limit_s"])
    seed = int(spec.get("seed", 0))

    need = samples_for_a_bound(q)

    budget = float(spec.get("max_seconds_per_search") or math.inf)

    def point(qps: float, k: int) -> dict:
        seconds = point_seconds(qps, need, float(spec["max_seconds_per_point"]), budget - (time.monotonic() - began))
        return served_until_undisturbed(
            lambda waited: _point(server, watch, qps, q, limit, seconds, seed + k, waited), watch.retries, emit)

    def confirm(qps: float, k: int) -> dict:  # the whole time given, unless it fails first
        seconds = min(CONFIRM_S, budget - (time.monotonic() - began))
        return served_until_undisturbed(
            lambda waited: _point(server, watch, qps, q, limit, seconds, seed + k, waited, hold=True),
            watch.retries, emit)

    if spec.get("qps"):
        for k, qps in enumerate(spec["qps"]):
            point(float(qps), k)
        return
    if median[1] > limit:  # one request alone takes longer than the limit: no rate can meet it
        emit("peak", passed=None, failed=None, points=0,
             reason=f"one pass takes {median[1] * 1e3:.3g} ms, above the limit of {limit * 1e3:.3g} ms")
        return
    predicted = predicted_peak(service, policy, q, limit)
    most = capacity(median, policy)
    emit("predicted", qps=predicted, capacity=most)
    # no simulated rate met the limit (passes near it): the search starts at half the capacity, never
    # at 1 request/s, where a point needs minutes for the requests its bound needs
    emit("peak", **search(point, predicted or (most and most / 2), resolution=RESOLUTION,
                          max_points=int(spec.get("max_points", MAX_POINTS)), budget_s=budget, since=began,
                          confirm=confirm if math.isfinite(budget) else None))


def point_seconds(qps: float, need: int, short: float, left: float) -> float:
    """How long a point at ``qps`` may serve: long enough for ``OPEN_REQUESTS`` times the ``need``
    requests a bound needs, however low the rate (at least ``short``), and never past the ``left``
    seconds of the search's budget: a point cut short ends undecided, and says so, rather than overrun
    the budget. A point that is decided ends there: only an undecided one serves this long."""
    return max(0.5, min(max(short, OPEN_REQUESTS * need / qps + 1.0), left))


def _service_times(forward, x, budget_s: float = 2.0) -> list[float]:
    """The times of passes at one batch size after two warm-up passes (7 to 40 of them, about
    ``budget_s``): the service times the queueing model draws from, not a figure of the cell."""
    import torch

    with torch.inference_mode():
        t0 = time.perf_counter()
        for _ in range(2):
            forward(x)
        passes = max(7, min(40, int(budget_s / max((time.perf_counter() - t0) / 2, 1e-6))))
        times = []
        for _ in range(passes):
            t0 = time.perf_counter()
            forward(x)
            times.append(time.perf_counter() - t0)
    return times


def search(point, start: float | None, resolution: float = RESOLUTION, max_points: int = MAX_POINTS,
           budget_s: float = math.inf, clock=time.monotonic, since: float | None = None, confirm=None,
           confirm_min_s: float = CONFIRM_MIN_S) -> dict:
    """The highest rate that passes, by bisection between one that passes and one that does not,
    from ``start`` (the peak the queueing model predicts): the first rate just under it, then steps
    of 6%, 25%, then doubling (or halving) until the verdict turns, then bisection. An undecided
    (``open``) point counts as not passed; unless its percentile was over the limit with late requests
    second after second (``late_throughout``), the steps start again from 6%: its tail is near the
    limit, so the peak is too. ``point(qps, k)`` measures one rate and
    returns its record (``verdict``). Returns ``passed`` (the highest rate that passed, or None),
    ``failed`` (the lowest that did not, or None) and ``points``; where ``budget_s`` (seconds of
    ``clock`` from ``since``, by default from now) was spent before the peak was known to ``resolution``, a ``reason`` says so.

    ``confirm(qps, k)``: serves a rate for the time left; where given and at least ``confirm_min_s``
    are left, the highest rate that passed is served again so, and if it fails there the next
    highest that passed is, while time is left (``confirmed``: the rate that held, or None;
    ``confirming``: the points served so)."""
    passed, failed, k, passes, moves = None, None, 0, [], 0
    qps = 0.97 * start if start else 1.0
    began, found = clock() if since is None else since, None
    while k < max_points:
        if clock() - began >= budget_s:
            undecided = (f"; {found['qps']:.3g} requests/s was not decided in its time (the bound needs more "
                         "requests than arrived)" if found and found.get("verdict") == "open" and "qps" in found else "")
            return {"passed": passed, "failed": failed, "points": k,
                    "reason": f"the search's {budget_s:.0f} s were spent before the peak was known to "
                              f"{100 * resolution:.0f}%{undecided}"}
        found = point(qps, k)
        k += 1
        if found["verdict"] == "pass":
            passed = qps if passed is None else max(passed, qps)
            passes.append(qps)
        else:
            failed = qps if failed is None else min(failed, qps)
        if passed is not None and failed is not None and (failed - passed) / failed <= resolution:
            break
        if found["verdict"] == "open" and not found.get("late_throughout"):
            moves = 0  # undecided, its late requests in a run or two at most: the peak is near, small steps again
        step = STEPS[min(moves, len(STEPS) - 1)] if start else 2.0
        moves += 1
        if failed is None:
            qps *= step  # the prediction was low: a step up, then doubling
        elif passed is None:
            qps /= step
            if qps < 0.05:  # not even one request per 20 s: nothing passes
                break
        else:
            qps = (passed + failed) / 2
    found = {"passed": passed, "failed": failed, "points": k}
    if confirm is not None:
        found.update(_confirmed(confirm, passes, failed, k, lambda: budget_s - (clock() - began), confirm_min_s))
    return found


def _confirmed(confirm, passes: list[float], failed: float | None, k: int, left, min_s: float) -> dict:
    """The highest rate that passed, served again for the time left (`search`); where it fails there,
    10% less, while time is left. ``passed``: the highest rate that passed below every fail."""
    below = [r for r in passes if failed is None or r < failed]
    rate, confirmed, first = (max(below) if below else None), None, k
    while rate is not None and left() >= min_s:
        found = confirm(rate, k)
        k += 1
        if found["verdict"] == "pass":
            confirmed = rate
            passes = [*passes, rate]
            break
        if found["verdict"] != "fail":  # undecided in the time left: the short point's pass stands
            break
        failed, rate = rate, 0.9 * rate
    below = [r for r in passes if failed is None or r < failed]
    return {"passed": max(below) if below else None, "failed": failed, "points": k, "confirmed": confirmed,
            "confirming": k - first}


def cores_apart(threads_needed: int) -> tuple[set[int], set[int]] | None:
    """(the cores the model keeps, the core the load generator takes) where this process may use more
    cores than the model's threads need; None where it may not (the generator then shares them)."""
    import os

    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) <= threads_needed:
        return None
    return set(allowed[:-1]), {allowed[-1]}


def _pin_threads(cores: set[int], but: set[int]) -> None:
    """Every thread of this process but the native ids in ``but`` onto ``cores`` (the intra-op pool's
    threads were started before: they do not inherit a later mask)."""
    import os

    for tid in os.listdir("/proc/self/task"):
        if int(tid) not in but:
            try:
                os.sched_setaffinity(int(tid), cores)
            except OSError:  # the thread ended meanwhile
                pass


class Server:
    """The model's instances serving one queue under a policy, for one rate at a time. Where the
    machine allows (``apart``), the load and watch threads run on a core of their own and the model's
    threads on the others, so the generator does not take the cores under test."""

    def __init__(self, forwards: dict, inputs: dict, policy, apart: tuple[set[int], set[int]] | None = None,
                 reference: dict | None = None):
        self.forwards, self.inputs, self.policy, self.apart = forwards, inputs, policy, apart
        self.sizes = sorted(forwards)
        self.reference = reference or {}  # {batch size: median pass seconds before the points}: the speed 1.0

    def padded(self, n: int) -> int:
        return next(b for b in self.sizes if b >= n)

    def run(self, schedule: list[float], stop_when, max_seconds: float) -> dict:
        """Serve requests arriving at ``schedule`` (seconds from now) until ``stop_when(latencies,
        waiting_since, arrived, busy)`` says so or ``max_seconds`` pass (``busy``: the passes' seconds
        and count so far, summed over instances); returns the latencies of the requests
        served and their arrivals (seconds from the start), the times those still waiting have waited
        and their arrivals, the load thread's CPU seconds, the wall time, ``busy``, and
        ``slowdown``: the median of the passes' times over the reference's for their batch size (1.2: the
        machine ran the model 20% slower during this point than when its service times were measured)."""
        import torch

        cond = threading.Condition()
        queue: deque = deque()  # scheduled arrival times (perf_counter), oldest first
        done: list[float] = []
        arrived: list[float] = []  # the served requests' arrivals, in the order of ``done``
        ratios: list[float] = []  # each pass's time over the reference time of its batch size
        state = {"stop": False, "load_cpu": 0.0, "issued": 0}
        busy = {"seconds": 0.0, "passes": 0}
        t0 = time.perf_counter() + 0.05  # after the threads are started and placed

        light: set[int] = set()  # the load and watch threads' native ids
        placed = threading.Barrier(3)

        def keep_apart() -> None:
            if self.apart is not None:
                import os

                os.sched_setaffinity(0, self.apart[1])  # 0: this thread
            light.add(threading.get_native_id())
            placed.wait()

        def load() -> None:
            keep_apart()
            cpu0 = time.thread_time()
            for offset in schedule:
                at = t0 + offset
                while True:
                    now = time.perf_counter()
                    if state["stop"] or now >= at:
                        break
                    time.sleep(min(at - now, 0.05))
                if state["stop"]:
                    break
                with cond:
                    queue.append(at)
                    state["issued"] += 1
                    cond.notify()
            state["load_cpu"] = time.thread_time() - cpu0

        def instance() -> None:
            policy = self.policy
            with torch.inference_mode():
                while True:
                    with cond:
                        while not state["stop"]:
                            if queue:
                                due = min(queue[0] + policy.max_wait_s,
                                          math.inf if len(queue) < policy.max_batch else 0.0)
                                wait = due - time.perf_counter()
                                if wait <= 0:
                                    break
                                cond.wait(wait)
                            else:
                                cond.wait(0.05)
                        if state["stop"]:
                            return
                        batch = [queue.popleft() for _ in range(min(policy.max_batch, len(queue)))]
                    size = self.padded(len(batch))
                    began = time.perf_counter()
                    self.forwards[size](self.inputs[size])
                    end = time.perf_counter()
                    with cond:
                        done.extend(end - at for at in batch)
                        arrived.extend(at - t0 for at in batch)
                        busy["seconds"] += end - began
                        busy["passes"] += 1
                        if self.reference.get(size):
                            ratios.append((end - began) / self.reference[size])

        def watch() -> None:
            # the verdict is Python holding the GIL, which the passes' Python needs too: asked twice a
            # second, and only once a tenth more requests came in
            keep_apart()
            deadline, asked = t0 + max_seconds, 0
            while True:
                time.sleep(0.1)
                now = time.perf_counter()
                with cond:
                    served, oldest = len(done), (queue[0] if queue else None)
                if now >= deadline or (not loader.is_alive() and oldest is None and served >= state["issued"]):
                    break
                backlog = None if oldest is None else now - oldest
                if served >= 1.1 * asked or (backlog or 0) > 0.5:
                    with cond:
                        latencies, arrivals_so_far, busy_so_far = list(done), list(arrived), dict(busy)
                    asked = served
                    if stop_when(latencies, backlog, arrivals_so_far, busy_so_far):
                        break
                    time.sleep(0.4)
            with cond:
                state["stop"] = True
                cond.notify_all()

        # the first instance runs in this (the main) thread: a forward pass from another Python thread
        # ran 1.8x slower on CPU (squeezenet1_1, 2 threads: 30 ms against 17), as its intra-op threads
        # are a team of their own; the load and the watch are light threads beside it
        loader = threading.Thread(target=load, daemon=True)
        watcher = threading.Thread(target=watch, daemon=True)
        others = [threading.Thread(target=instance, daemon=True) for _ in range(self.policy.instances - 1)]
        for t in [loader, watcher]:
            t.start()
        placed.wait()
        if self.apart is not None:
            _pin_threads(self.apart[0], light)
        for t in others:
            t.start()
        instance()
        for t in [watcher, loader, *others]:
            t.join()
        end = time.perf_counter()
        with cond:
            waiting = [end - at for at in queue]
            waiting_arrived = [at - t0 for at in queue]
            slowdown = sorted(ratios)[len(ratios) // 2] if ratios else None
        return {"latencies": list(done), "arrived": list(arrived), "waiting": waiting,
                "waiting_arrived": waiting_arrived, "load_cpu_s": state["load_cpu"],
                "wall_s": end - t0, "issued": state["issued"], "slowdown": slowdown, "busy": dict(busy)}


def utilisation(busy: dict, seconds: float, instances: int) -> float | None:
    """The share of the point's time its instances spent in passes (the queue's utilisation)."""
    return busy["seconds"] / (seconds * instances) if seconds > 0 and busy["passes"] else None


def settled(busy: dict, seconds: float, instances: int) -> bool:
    """Whether ``seconds`` of serving span ``RELAXATIONS`` relaxation times of the queue (Whitt's
    M/M/1 figure, mean pass / (1 - sqrt(utilisation))^2): a point starts with an empty queue, which
    near saturation takes seconds to build up to its steady state, and a verdict taken before that is
    optimistic (mobilenet_v3_large passed 3 s points at 99 requests/s, 95% busy, and failed when
    served for 14 s at that rate and for 25 s at 89)."""
    rho = utilisation(busy, seconds, instances)
    if rho is None:
        return False
    if rho >= 1.0:
        return False
    mean_pass = busy["seconds"] / busy["passes"]
    return seconds >= RELAXATIONS * mean_pass / (1.0 - math.sqrt(rho)) ** 2


def _late_throughout(latencies: list[float], q: float, limit: float, arrived: list[float]) -> bool:
    """Whether the percentile so far is over the limit with its late requests spread over the seconds
    of arrivals (the late share's batch-means lower bound above zero), not one run of them: one stall
    makes the 4 late requests that put a p99 over the limit among 300 (resnet18 stopped so at 35 and
    44 requests/s; LoadGen held 19 with a p99 of 58 ms)."""
    from ..measure.serving import late_share

    if _estimate(latencies, q) <= limit:
        return False
    share = late_share(arrived, latencies, limit)
    return share is not None and share[0] > 0.0


def _estimate(latencies: list[float], q: float) -> float:
    """The ``q``-quantile of the latencies so far (the order statistic at ``q``)."""
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def served_until_undisturbed(serve_point, retries: int, emit) -> dict:
    """``serve_point(waited_s)`` once, and again up to ``retries`` times (--on-busy wait) while other
    processes disturbed it (a fresh wait for a quiet machine before each); the last one is emitted and
    returned, flagged if it was still disturbed."""
    waited = 0.0
    for attempt in range(1 + retries):
        record = serve_point(waited)
        waited = record["busy_wait_s"]
        if not record["disturbed"] or attempt == retries:
            break
        emit("again", qps=record["qps"], contention=record["contention"])
    emit("point", **record)
    return record


def _point(server: Server, watch, qps: float, q: float, limit: float, max_seconds: float, seed: int,
           waited_before: float = 0.0, hold: bool = False) -> dict:
    """One rate served until its tail is decided: its record (``busy_wait_s`` adds ``waited_before``).
    ``hold``: a pass does not end it, only a fail or ``max_seconds`` (a confirmation of the peak)."""
    from ..measure import busy, memory
    from ..measure.latency import median, percentile
    from ..measure.serving import arrivals, quantile_bounds, samples_for_a_bound, verdict

    need = samples_for_a_bound(q)
    waited, _ = watch.wait_for_quiet(restart=False, qps=qps)
    n = int(qps * max_seconds * 1.5) + need + 10
    schedule = arrivals(qps, n, seed)

    def decided(latencies: list[float], backlog: float | None, arrived: list[float], work: dict) -> bool:
        if backlog is not None and backlog > BACKLOG_LIMITS * limit:
            return True  # requests wait far beyond the limit: the rate cannot be kept up
        if len(latencies) < MIN_FAIL or len(latencies) / qps < MIN_POINT_S:
            return False
        # a pass needs its bound's requests; a fail needs its lower bound over the limit and the late
        # share shown over seconds of arrivals (batch means): a queue's latencies come in runs, and a
        # fail on a few requests of one stall sent a search down to a third of the peak LoadGen met
        found = verdict(latencies, q, limit, arrived=arrived)
        if found == "open" and not hold and len(latencies) >= need and _late_throughout(latencies, q, limit, arrived):
            return True  # late requests second after second: more of them would not make it pass
        if found == "pass" and not settled(work, max(arrived) - min(arrived), server.policy.instances):
            return False  # a queue started empty is still below its steady state (a fail shown is shown)
        return found == "fail" or (found == "pass" and len(latencies) >= need and not hold)

    memory.release_free_memory()  # the peak of this point, not of what freed memory the last one kept
    memory.reset_peak()
    window = busy.Window(watch.own)
    served = server.run(schedule, decided, max_seconds)
    load = window.end()
    # requests still waiting when the point ended took at least that long: counted so, never dropped
    every, arrived = served["latencies"] + served["waiting"], served["arrived"] + served["waiting_arrived"]
    latencies = sorted(every)
    low, high = quantile_bounds(latencies, q) if latencies else (None, None)
    backlog = bool(served["waiting"]) and max(served["waiting"]) > BACKLOG_LIMITS * limit
    found = verdict(every, q, limit, arrived=arrived) if latencies else "open"
    unsettled = bool(arrived) and not settled(served["busy"], served["wall_s"], server.policy.instances)
    if found == "pass" and unsettled:
        found = "open"
    if backlog:
        found = "fail"
    record = {
        "qps": qps, "requests": len(latencies), "served": len(served["latencies"]), "wall_s": served["wall_s"],
        "achieved_qps": len(served["latencies"]) / served["wall_s"] if served["wall_s"] > 0 else None,
        "p50_s": median(latencies) if latencies else None,
        "p90_s": percentile(latencies, 90) if len(latencies) >= 10 else None,
        "p99_s": percentile(latencies, 99) if len(latencies) >= 100 else None,
        "q": q, "q_low_s": low, "q_high_s": high, "limit_s": limit, "verdict": found, "overloaded": backlog,
        "estimate_s": _estimate(latencies, q) if latencies else None,
        "late_throughout": bool(latencies) and _late_throughout(every, q, limit, arrived),
        "utilisation": utilisation(served["busy"], served["wall_s"], server.policy.instances),
        "unsettled": unsettled,
        "slowdown": served["slowdown"], "load_cpu_s": served["load_cpu_s"], "busy_wait_s": waited_before + waited, "mem_peak_bytes": memory.peak_rss_bytes(),
        "contention": load.excess(watch.cores) if load else None,
        "disturbed": load.disturbed(watch.cores) if load else None,
    }
    return record
