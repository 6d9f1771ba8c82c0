"""The serving tier: artifact folders behind the Open Inference Protocol (Ray Serve + KServe), and Triton
model repositories for GPU fleets. Imports ``runtimes``, never ``exporter``."""
