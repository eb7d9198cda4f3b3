"""Randomized smoothing (Cohen, Rosenfeld & Kolter 2019): certified l2 robustness.

A smoothed classifier ``g(x) = argmax_c P(f(x + N(0, sigma^2 I)) = c)`` is built on any base
classifier ``f``. Its certificates are lower bounds on robust accuracy; an attack on ``g`` with
expectation over the noise gives the matching upper bound. The modules, bottom up:

- :mod:`~robustness.smoothing.bounds`: the statistics (one-sided Clopper–Pearson bound, the
  binomial test of PREDICT, radii, the largest radius ``n`` samples can certify);
- :mod:`~robustness.smoothing.classifier`: :class:`SmoothedClassifier`, the noise counts drawn on
  the model's device in large batches, PREDICT and CERTIFY;
- :mod:`~robustness.smoothing.soft`: the soft smoothed model attacks differentiate through;
- :mod:`~robustness.smoothing.empirical`: the attack on ``g`` (PGD with EOT over the noise),
  judged by ``g``'s own Monte Carlo vote;
- :mod:`~robustness.smoothing.bracket`: both together at each eps of an audit (the ``certify``
  section of results.json); :mod:`~robustness.smoothing.config`: its config block.

This package imports no torch when imported itself, so reading an audit config stays light.
"""
