"""The 2nd AnDi Challenge (2024) as the yardstick: official scoring, submissions, methods, baselines, the benchmark."""
