"""robeserve kernels: the NumPy hash spec (``kernels.reference``) and the ai.robe custom-op library."""
