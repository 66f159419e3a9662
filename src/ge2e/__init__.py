"""ge2e: speaker verification with the Generalized End-to-End loss (Wan et al., ICASSP 2018)."""

__version__ = "0.1.0"
