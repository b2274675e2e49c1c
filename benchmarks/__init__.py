"""Harnesses that drive the served studio from outside, as people and scripts would: every bad input
(``bad_inputs``), many voters at once (``load_test``), and how fast the page answers (``benchmark_studio``).

They import the studio (``benchmarks → studio → alignment``); nothing imports them but the tests. Their reports go
to ``benchmarks/results/``.
"""
