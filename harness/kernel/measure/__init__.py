"""Measurement discipline: policy, stop rule, statistics, validity flags."""
