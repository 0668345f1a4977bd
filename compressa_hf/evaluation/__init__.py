"""Evaluation of compressed sets: the train-from-scratch protocol (`train.py`), statistics (`stats.py`), the
report (`report.py`) and the `compressa evaluate` engine (`runner.py`). Heavy modules are imported by their users."""
