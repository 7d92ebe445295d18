"""What `dnnbench run` shows while it works (a progress bar, notes, failures) and the summary table
at the end. The sweep itself never prints; it sends events here."""

from __future__ import annotations

from ..units import format_bytes
from .plan import RunConfig


class RunPrinter:
    def __init__(self, config: RunConfig, stream):
        self.config = config
        self.stream = stream
        self.bar = None
        self._round = 1

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream)

    def event(self, kind: str, data: dict) -> None:
        from tqdm import tqdm

        c = self.config
        if kind == "plan":
            mode = (f"quick mode: coarse figures (target ±{c.target_ci:.0%}, {c.max_seconds_per_cell:g} s per cell)"
                    if c.quick else f"target ±{c.target_ci:.0%} on the median, at most {c.max_seconds_per_cell:g} s "
                                    "of timed passes per cell")
            if c.rounds > 1:
                mode += f", in {c.rounds} rounds (fresh processes, minutes apart)"
            what = "cells" if c.rounds == 1 else "cell rounds"
            self._write(f"dnnbench run: {data['cells']} {what} to measure on {c.device} with {c.threads} threads "
                        f"({data['already']} cells complete in the database); {mode}")
            self.bar = tqdm(total=data["cells"], desc="run", unit="cell", file=self.stream, disable=None,
                            dynamic_ncols=True)
        elif kind == "note":
            self._write(f"dnnbench run: {data['text']}")
        elif kind == "worker" and self.bar is not None:
            self._round = data.get("round", 1)
            self.bar.set_postfix_str(f"{self._where()}{data['model']} (starting)")
        elif kind == "start" and self.bar is not None:
            self.bar.set_postfix_str(f"{self._where()}{data['model']} batch {data['batch_size']}")
        elif kind == "skip":
            self._write(f"dnnbench run: {data['model']}: {data['cells']} cells were measured meanwhile by another sweep")
            if self.bar is not None:
                self.bar.update(data["cells"])
        elif kind == "cell":
            if self.bar is not None:
                self.bar.update(1)
            if data["status"] != "ok":
                self._write(f"dnnbench run: {self._where()}{data['model']} batch {data['batch_size']}: "
                            f"{data['status']}: {data.get('error')}")

    def _where(self) -> str:
        return f"round {self._round}/{self.config.rounds}: " if self.config.rounds > 1 else ""

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def summary(self, rows: list[dict], result) -> str:
        from ..cli import _table

        headings = ["model", "batch", "status", "median (ms)", "95% CI (±%)", "p90 (ms)", "time/image (ms)",
                    "images/s", "peak RSS", "samples", "rounds", "stop"]
        body = []
        for r in rows:
            ok = r["status"] == "ok"
            ci = f"{r['ci_rel'] * 100:.1f}" if ok and r.get("ci_rel") is not None else "-"
            body.append([
                r["model"], str(r["batch_size"]), r["status"],
                _ms(r["latency_median_s"]), ci, _ms(r["latency_p90_s"]), _ms(r["time_per_image_s"]),
                f"{r['images_per_s']:.1f}" if r.get("images_per_s") else "-",
                format_bytes(r.get("mem_peak_bytes")), str(r["samples"] or "-"), str(r.get("rounds") or "-"),
                r.get("stop_reason") or "-"])
        lines = [_table(headings, body, right={1, 3, 4, 5, 6, 7, 8, 9, 10})]
        new = sum(1 for m in result.measured if m.get("stored"))
        what = "cells" if self.config.rounds == 1 else "cell rounds"
        lines.append(f"{new} {what} measured now, {result.already} complete cells taken from the database "
                     f"(run {result.run_id}). "
                     "Latency: one forward pass of the batch, median of the timed passes of every round; CI: 95% "
                     "interval of the median, widened by how much the rounds' medians differ; stop: converged "
                     "(target reached in every round) or time_cap (budget spent).")
        partial = [r for r in rows if r["status"] == "ok" and r.get("error")]
        for r in partial:
            lines.append(f"{r['model']} batch {r['batch_size']}: {r['error']}; the figures are from the rounds before.")
        if self.config.quick:
            lines.append("quick mode: these are coarse figures; run without --quick for the target precision.")
        return "\n".join(lines)


def _ms(value) -> str:
    if value is None:
        return "-"
    return f"{value * 1e3:,.0f}" if value >= 0.1 else f"{value * 1e3:.3g}"
