"""The analysis: fits, frontiers, the constraint search and latency prediction, as pure functions
over plain data (no I/O), and `load()` which reads that data from a store."""
