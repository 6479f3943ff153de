"""The kernel: what the controller and the agents both stand on.

Limits, measurement policy and statistics, the wire codec, the array codec,
child processes, configuration-file loading, model-file inspection, the
simulated-latency model and the shared vocabularies (EP names, model
formats). Nothing here imports the controller (the rest of `harness`) or
the agents; tests/unit/test_import_graph.py checks it.
"""
