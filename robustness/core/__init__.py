"""The ground floor: what every other part of the tool stands on, importing none of them.

Errors, atomic file writes, the threat model (norms, eps, projections), metrics and intervals,
the torchrun context, the model wrapper with model loading and its schemes, data loading and
its schemes, the plug-in registry, the typed results file (schema, its sections, plausibility,
number formatting, the verdict rule), the CPU thread count and the output-folder lock. Nothing
here imports ``attacks``, ``defenses``, ``reports`` or the rest of ``robustness``
(``tests/test_layering.py`` checks every import).
"""
