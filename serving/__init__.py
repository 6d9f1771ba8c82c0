"""The serving tier: artifact folders behind the Open Inference Protocol (Ray Serve + KServe), and Triton
model repositories for GPU fleets.

Layering (tests/test_layering.py checks it): ``serving`` imports ``runtimes`` and never ``exporter``.
"""
