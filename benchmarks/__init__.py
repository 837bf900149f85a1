"""Speed benchmarks, printed as ratios against torch's native kernels (``python -m benchmarks.norms``)."""
