"""What `dnnbench run` shows while it works (a progress bar, notes, failures, disturbed cells) and
the summary table at the end. The sweep itself never prints; it sends events here.

On a terminal: a bar, with the time to go estimated from what each remaining cell should cost.
Elsewhere (CI, nohup, a pipe): one line per cell, with the same estimate.
"""

from __future__ import annotations

import math
import time
from typing import Callable

from ..measure import busy
from ..setup import Setup
from ..text import natural_key, table
from ..units import format_bytes
from .plan import RunConfig


class CostModel:
    """Expected seconds of the cells still to measure: a cell costs ``a + k x work`` seconds, with
    work = MACs x batch size, fitted (least squares, both terms non-negative) on the cells measured
    so far; a model whose MACs are not known yet counts as the median known model. Each worker
    start adds the mean start-up seen so far."""

    def __init__(self, todo: dict[tuple[str, int], int], macs: dict[str, int | None], prior_cell_s: float):
        self.todo = dict(todo)  # (model, batch) -> cell rounds left
        self.macs = {m: v for m, v in macs.items() if v}
        self.prior = prior_cell_s
        self.seen: list[tuple[float, float]] = []  # (work, seconds)
        self.startups: list[float] = []

    def known_macs(self, model: str, macs: int | None) -> None:
        if macs:
            self.macs[model] = macs

    def _work(self, model: str, batch: int) -> float:
        macs = self.macs.get(model)
        if macs is None and self.macs:
            known = sorted(self.macs.values())
            macs = known[len(known) // 2]
        return float(macs or 1e9) * batch

    def done(self, model: str, batch: int, seconds: float | None) -> None:
        if self.todo.get((model, batch)):
            self.todo[(model, batch)] -= 1
        if seconds and seconds > 0:
            self.seen.append((self._work(model, batch), seconds))

    def started_worker(self, seconds: float) -> None:
        self.startups.append(seconds)

    def _fit(self) -> tuple[float, float]:
        if not self.seen:
            return self.prior, 0.0
        works = [w for w, _ in self.seen]
        secs = [s for _, s in self.seen]
        n = len(works)
        mw, ms = sum(works) / n, sum(secs) / n
        var = sum((w - mw) ** 2 for w in works)
        k = max(0.0, sum((w - mw) * (s - ms) for w, s in self.seen) / var) if var > 0 else 0.0
        a = max(0.0, ms - k * mw)
        return a, k

    def remaining_s(self) -> float:
        a, k = self._fit()
        cells = sum(n * (a + k * self._work(m, b)) for (m, b), n in self.todo.items())
        models = {m for (m, _), n in self.todo.items() if n}
        startup = sum(self.startups) / len(self.startups) if self.startups else 0.0
        return cells + startup * len(models)


class RunPrinter:
    """Turns the sweep's events into the bar and the lines a user reads on ``stream``. ``progress``
    False: no bar and no line per cell; notes, warnings and failures are still said."""

    def __init__(self, config: RunConfig, stream, progress: bool = True):
        self.config = config
        self.stream = stream
        self.progress = progress
        self.bar = None
        self._round = 1
        self.cost: CostModel | None = None
        self.total = self.count = 0
        self.t0 = time.monotonic()
        self._worker_t0: float | None = None

    def _write(self, text: str) -> None:
        if self.bar is not None and not self.bar.disable:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    @property
    def _lines(self) -> bool:
        """One line per cell instead of a bar (the stream is not a terminal)."""
        return self.bar is None or bool(self.bar.disable)

    def event(self, kind: str, data: dict) -> None:
        from ..progressbar import bar

        c = self.config
        if kind == "plan":
            budget = c.max_seconds_per_cell
            per_round = f" ({budget / c.rounds:.3g} s in each of {c.rounds} rounds)" if c.rounds > 1 else ""
            mode = (f"quick mode: coarse figures (target ±{c.target_ci:.0%}, {budget:g} s per cell{per_round})"
                    if c.quick else f"target ±{c.target_ci:.0%} on the median, at most {budget:g} s "
                                    f"of timed passes per cell{per_round}")
            if c.rounds > 1:
                mode += f", in {c.rounds} rounds (fresh processes, minutes apart, models in random order)"
            what = "cells" if c.rounds == 1 else "cell rounds"
            machine = f" of {data['machine']}" if data.get("machine") else ""
            runtimes = f" in {', '.join(data['setups'])}" if data.get("setups") else ""
            if self.progress:  # what the bar will count; said only where a bar or lines follow
                self._write(f"dnnbench run: {data['cells']} {what} to measure on {c.device}{machine} with {c.threads} "
                            f"threads{runtimes} ({data['already']} cells complete in the database); {mode}; on a busy "
                            f"machine: {_ON_BUSY[c.on_busy]}")
            self.total = data["cells"]
            self.cost = CostModel(data.get("todo", {}), data.get("macs", {}),
                                  prior_cell_s=1.0 + 1.5 * c.max_seconds_per_cell / c.rounds)
            self.bar = bar(total=data["cells"], desc="run", unit="cell", stream=self.stream, enabled=self.progress,
                           dynamic_ncols=True, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
        elif kind == "note":
            self._write(f"dnnbench run: {data['text']}")
        elif kind == "busy":
            self._write(f"dnnbench run: warning: {data['text']}: figures will be slow and noisy; close them, or "
                        f"see --on-busy (now: {data['on_busy']}: {_ON_BUSY[data['on_busy']]})")
        elif kind == "wait":
            self._write(f"dnnbench run: {self._where()}{data['model']} batch {data['batch_size']}: {data['load']}; "
                        f"waiting up to {data['limit_s']:g} s for the machine to be quiet")
        elif kind == "static" and self.cost is not None:
            self.cost.known_macs(data["model"], data.get("macs"))
        elif kind == "worker":
            self._round = data.get("round", 1)
            self._worker_t0 = time.monotonic()
            self._postfix(f"{self._where()}{data['model']} (starting)")
        elif kind == "start":
            if self._worker_t0 is not None and self.cost is not None:
                self.cost.started_worker(time.monotonic() - self._worker_t0)
                self._worker_t0 = None
            self._postfix(f"{self._where()}{data['model']} batch {data['batch_size']}")
        elif kind == "skip":
            self._write(f"dnnbench run: {data['model']}: {data['cells']} cells were measured meanwhile by another sweep")
            self._advance(data["cells"])
        elif kind == "cell":
            if self.cost is not None:
                self.cost.done(data["model"], data["batch_size"], data.get("cell_wall_s"))
            self._advance(1)
            runtime = f" ({Setup.of(data).runtime()})" if len(self.config.setups) > 1 else ""
            where = f"{self._where()}{data['model']}{runtime} batch {data['batch_size']}"
            if data["status"] == "untimed":  # its reason once, in the summary
                if data.get("artifact_bytes"):
                    self._write(f"dnnbench run: {where}: converted ({format_bytes(data['artifact_bytes'])}), not timed")
            elif data["status"] != "ok":
                self._write(f"dnnbench run: {where}: {data['status']}: {data.get('error')}")
            elif data.get("disturbed"):
                tries = data.get("busy_attempts") or 1
                again = f", timed {tries} times" if tries > 1 else ""
                self._write(f"dnnbench run: {where}: disturbed: {busy.cause(data)} during its timed passes{again}; "
                            "flagged")
            if self._lines and self.progress:
                self._write(f"dnnbench run: [{self.count}/{self.total}] {where}: {_cell_brief(data)}; {self._eta()}")

    def _advance(self, n: int) -> None:
        self.count += n
        if self.bar is not None:
            self.bar.update(n)

    def _postfix(self, text: str) -> None:
        if self.bar is not None and not self.bar.disable:
            self.bar.set_postfix_str(f"{self._eta()}, {text}", refresh=True)

    def _eta(self) -> str:
        elapsed = _clock(time.monotonic() - self.t0)
        if self.cost is None or self.count >= self.total:
            return f"{elapsed} elapsed"
        return f"{elapsed} elapsed, about {_clock(self.cost.remaining_s())} to go"

    def _where(self) -> str:
        return f"round {self._round}/{self.config.rounds}: " if self.config.rounds > 1 else ""

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def summary(self, rows: list[dict], result) -> str:
        return summary(self.config, rows, result)


def summary(config: RunConfig, rows: list[dict], result) -> str:
    """The table of a run's cells (``rows``) and what it did (``result``: a `SweepResult`), in words."""
    several = len({Setup.of(r) for r in rows}) > 1  # then each row says its backend and precision
    headings = ["model", *(["setup"] if several else []), "batch", "status", "median (ms)", "95% CI (±%)",
                "p90 ≤ bound (ms)", "time/image (ms)", "images/s", "peak RSS", "samples", "rounds", "stop", "load", "usual"]
    body = []
    rows = sorted(rows, key=lambda r: (natural_key(r["model"]), Setup.of(r).runtime(), r["batch_size"]))
    for r in rows:
        ok = r["status"] == "ok"
        body.append([
            r["model"], *([Setup.of(r).runtime()] if several else []), str(r["batch_size"]),
            r["status"], _ms(r["latency_median_s"]), _ci(r) if ok else "-", _tail(r, 90),
            _ms(r["time_per_image_s"]), f"{r['images_per_s']:.1f}" if r.get("images_per_s") else "-",
            format_bytes(r.get("mem_peak_bytes")), str(r["samples"] or "-"), str(r.get("rounds") or "-"),
            r.get("stop_reason") or "-", _load(r), _usual(r)])
    shift = 1 if several else 0
    lines = [table(headings, body, right={1 + shift, *(i + shift for i in (3, 4, 5, 6, 7, 8, 9, 10))})]
    new_ok = sum(1 for m in result.measured if m.get("stored") and m["status"] == "ok")
    new_failed = sum(1 for m in result.measured if m.get("stored") and m["status"] not in ("ok", "untimed"))
    untimed = [m for m in result.measured if m.get("stored") and m["status"] == "untimed"]
    what = "cells" if config.rounds == 1 else "cell rounds"
    converted = f"{len(untimed)} converted but not timed, " if untimed else ""
    lines.append(f"{new_ok} {what} measured now, {converted}{new_failed} failed, {result.already} complete cells taken "
                 f"from the database{f' (run {result.run_id})' if result.run_id is not None else ''}. "
                 "Latency: one forward pass of the batch, median of the timed passes of every round; CI: 95% "
                 "interval of the median, widened by how much the rounds' medians differ; stop: converged "
                 "(target reached in every round) or time_cap (budget spent); p90 ≤ bound: the 90th percentile of "
                 "the passes and its 95% upper bound (few: under 29 passes, too few for a bound); load: busy when other "
                 "processes used more than 5% of the cores the timed passes needed; usual: the median over this machine's usual "
                 "time for the cell (the median of its earlier runs), off where the interval excludes it.")
    for reason in dict.fromkeys(m["error"] for m in untimed):
        lines.append(f"untimed: {reason}.")
    disturbed = [r for r in rows if r["status"] == "ok" and r.get("disturbed")]
    if disturbed:
        lines.append(f"{len(disturbed)} of {sum(r['status'] == 'ok' for r in rows)} cells were disturbed by other "
                     "processes (load: busy): their times are likely too slow and their intervals too "
                     "optimistic; measure them again on a quiet machine (delete them, or use a new --db).")
    partial = [r for r in rows if r["status"] == "ok" and r.get("error")]
    for r in partial:
        lines.append(f"{r['model']} batch {r['batch_size']}: {r['error']}; the figures are from the rounds before.")
    drift = getattr(result, "drift", None)
    if drift is not None:
        lines.append(f"Between rounds the cells moved by ±{100 * math.expm1(drift.sd):.1f}% (one standard deviation, "
                     f"pooled over {drift.cells} cells, {drift.df} degrees of freedom): the interval of every cell of "
                     "two rounds or more covers that drift.")
    lines += _usual_lines(getattr(result, "usual", None))
    if config.quick and config.rounds > 1:
        lines.append(f"quick mode: coarse figures from {config.rounds} short windows per cell, taken in fresh processes "
                     "as far apart as the run is long; their intervals cover the drift the run saw between them, "
                     "not a machine that was slow (or fast) for the whole run: a later run can differ by more. Run "
                     "without --quick for the target precision from three rounds.")
    elif config.quick:
        lines.append("quick mode: coarse figures, each from one window of a few seconds, and their intervals cover "
                     "only what varied within it: on a shared machine a later window can differ by more. Run "
                     "without --quick for the target precision and intervals that cover the spread between rounds.")
    return "\n".join(lines)


def _usual_lines(found) -> list[str]:
    """What the run's cells say against this machine's usual times for them (`store.usual.Against`)."""
    if found is None:
        return []
    if not found.checked:
        return [f"No earlier run of these {found.new} cells on this machine with these library versions: their "
                "intervals cover this run's minutes only, and a later run can differ by more (a shared machine "
                "runs slower or faster for minutes at a time). The next runs are checked against this one "
                f"(record: {found.path})."]
    runs = f"{found.runs[0]}" if found.runs[0] == found.runs[1] else f"{found.runs[0]} to {found.runs[1]}"
    text = (f"Against this machine's usual time for each cell (the median of its {runs} earlier run(s) with these "
            f"library versions): this run's cells ran at {found.ratio:.2f}x it (median over {found.checked} cells); "
            f"{found.off} of them lie outside their intervals from it, flagged (usual: off)")
    if found.off and found.ratio is not None and abs(math.log(found.ratio)) > math.log(1.03):
        text += (f": the machine ran {'slower' if found.ratio > 1 else 'faster'} than usual for this run as a whole, "
                 "which no interval of one run can see; compare with `dnnbench compare` across runs, or measure again")
    text += "." + (f" {found.new} cells had no earlier run." if found.new else "")
    return [text]


_ON_BUSY = {
    "wait": "wait for quiet before a cell and time a disturbed cell again, then flag it",
    "measure": "measure anyway and flag disturbed cells",
    "stop": "stop the sweep",
}


def _load(r: dict) -> str:
    if r.get("disturbed") is None:
        return "-"
    if not r["disturbed"]:
        return "quiet"
    parts = [f"busy {r.get('contention') or 0:.0%}"] if (r.get("contention") or 0) >= 0.01 else []
    if r.get("gpu_other_processes"):
        parts.append("+GPU")
    return " ".join(parts) or "busy"


def _usual(r: dict) -> str:
    """The cell's median over this machine's usual time for it, "off" where its interval excludes it."""
    from ..store.usual import off

    if not r.get("usual_s") or r.get("latency_median_s") is None:
        return "-"
    return f"{r['latency_median_s'] / r['usual_s']:.2f}x" + (" off" if off(r) is not None else "")


def _ci(r: dict) -> str:
    rel = r.get("ci_rel")
    if rel is None:
        return "-"
    return f"{rel * 100:.1f}" if rel < 10 else ">1000"


def _cell_brief(r: dict) -> str:
    if r["status"] != "ok":
        return r["status"]
    text = f"{_ms(r.get('latency_median_s'))} ms"
    if r.get("ci_rel") is not None:
        text += f" ±{_ci(r)}%"
    return text + (" (busy machine)" if r.get("disturbed") else "")


def _clock(seconds: float) -> str:
    seconds = int(round(max(0.0, seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _tail(r: dict, p: int) -> str:
    """A percentile with its 95% upper bound, or said to have too few samples for one."""
    value, high = r.get(f"latency_p{p}_s"), r.get(f"latency_p{p}_high_s")
    if value is None:
        return "-"
    return f"{_ms(value)} ≤ {_ms(high)}" if high is not None else f"{_ms(value)} (few)"


def _ms(value) -> str:
    if value is None:
        return "-"
    return f"{value * 1e3:,.0f}" if value >= 0.1 else f"{value * 1e3:.3g}"


def say_to(stream, command: str = "run") -> Callable[[str], None]:
    """A function that says a line of ``command`` on ``stream``."""

    def say(text: str) -> None:
        print(f"dnnbench {command}: {text}", file=stream, flush=True)

    return say
