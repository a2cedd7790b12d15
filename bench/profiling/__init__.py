"""Profiling: the `profile` schedule, profiled runs under torch.profiler, and reading traces back."""
