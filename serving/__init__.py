"""The serving tier: artifact folders behind the Open Inference Protocol (Ray Serve + KServe), and Triton
model repositories for GPU fleets. Layering: imports ``runtimes``'s public modules, never ``exporter``."""
