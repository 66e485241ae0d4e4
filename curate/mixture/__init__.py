"""Training mixtures from evidence: domain labels (``domain_label`` stage) and the proxy-run
mixture search of ``curate mixopt`` (RegMix, Liu et al. 2024; Olmix)."""
