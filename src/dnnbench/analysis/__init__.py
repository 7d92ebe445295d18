"""The analysis: fits, frontiers, the constraint search and latency prediction, as pure functions
over plain data (no I/O), and `load()` which reads that data from a store."""

# the prediction methods of `predictor.METHODS`, in words (here, without numpy: the command line's
# choices come from it)
PREDICT_METHODS = {
    "kernels": "its kernels timed on this machine and summed",
    "features": "operations by kind of kernel, activations and kernel calls",
    "ops": "a line in operations",
}
