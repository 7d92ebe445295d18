"""dnnbench: which pretrained vision model to deploy on this hardware, measured on it.

    import dnnbench
    res = dnnbench.run(["resnet18", "mobilenet_v2"], batch_sizes=[1, 8], quick=True)
    res.cells.to_pandas()
    print(res.recommend(max_memory="1GB", max_latency="50ms"))

See `dnnbench.api` (``help(dnnbench.run)``) for everything public: `models`, `inspect`, `run`, `open`,
`Setup`, `Results`. The rest of the package is internal.
"""

from ._version import __version__  # noqa: F401 - dnnbench.__version__

__all__ = ["Comparison", "ModelInfo", "Predictions", "Recommendation", "Results", "RunOutcome", "Rows", "Served", "Setup",
           "UserError", "compare", "evaluate", "inspect", "merge", "models", "open", "run", "serve", "versus"]


def __getattr__(name: str):
    # the API loads on first use, so that `import dnnbench` (and every worker process) stays fast
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'dnnbench' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
