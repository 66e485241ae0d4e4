"""curate: data curation and selection for language-model pretraining."""
import os

# MKL (torch's CPU BLAS) picks sgemm kernels by row position and memory alignment on AVX-512, so
# a row's result could depend on its neighbours in a batch. Strict conditional numerical
# reproducibility (read once, at MKL's first call: hence here, before any torch import) makes it
# depend on the row alone, at ~7% of matmul speed. A value the user set is kept.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

__version__ = "0.1.0"
