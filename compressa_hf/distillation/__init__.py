"""Distillation methods: VideoCompressa (`videocompressa/`), Gumbel sampling (`gumbel.py`) and the ratio
planner (`budget.py`). Heavy modules are imported by their users, not here."""
