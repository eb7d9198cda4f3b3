"""Privacy and theft audits: membership inference and model extraction.

- :mod:`~robustness.privacy.roc`: TPR at low FPR with exact intervals, AUC, advantage, the ROC;
- :mod:`~robustness.privacy.signals`: what an attack observes of a model (loss, probability,
  logit-scaled confidence);
- :mod:`~robustness.privacy.references`: reference models, given or trained on a pool without
  the audited samples;
- :mod:`~robustness.privacy.membership`: the attacks (loss threshold, offline RMIA, offline LiRA)
  and per-class leakage and exposure;
- :mod:`~robustness.privacy.extraction`: a thief with query access copies the model;
- :mod:`~robustness.privacy.audit`: both audits from specs (the commands and audit sections);
- :mod:`~robustness.privacy.config`: the ``privacy:`` and ``extraction:`` config blocks.

Importing this package imports no torch; the modules that need it import it themselves.
"""
