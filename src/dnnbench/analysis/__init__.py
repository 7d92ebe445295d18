"""The analysis: fits, frontiers, the constraint search and latency prediction, as pure functions
over plain data (no I/O), and `load()` which reads that data from a store."""

# the prediction methods of `predictor.METHODS`, in words (here, without numpy: the command line's
# choices come from it)
# ``auto`` chooses among these
AUTO_METHODS = ("kernels", "inside", "runtime", "features", "ops")
# how auto chooses (`predictor.Calibration.rank`), in the words of the method list, the help and the table
AUTO_RULE = ("of those that missed no calibration model by more than 50% (else of all), the most "
             "leave-one-out predictions within ±10% on the calibration (counted twice, and within ±20% once; "
             "then the smallest median error)")
PREDICT_METHODS = {
    "auto": f"whichever of kernels, inside, runtime, features and ops has {AUTO_RULE}",
    "kernels": "its kernels timed on this machine and summed",
    "inside": "its kernels timed on this machine, each corrected to its time inside a model, and summed",
    "runtime": "the kernels the setup's runtime (ONNX Runtime or OpenVINO) runs as one (convolutions, matrix "
               "products, attention, pooling, concatenations, squeeze-and-excitation products, transposes), timed in it, and summed",
    "features": "operations by kind of kernel, activations and kernel calls",
    "ops": "a line in operations",
}
