"""The ground floor: what every other part of the tool stands on, importing none of them.

Errors, atomic file writes, the threat model (norms, eps, projections), metrics and intervals,
the torchrun context, the model wrapper with model loading, data loading, the CPU thread count,
the output-folder lock and the plug-in registry. Nothing here imports ``attacks``, ``defenses``,
``reports`` or the rest of ``robustness`` (``tests/test_layering.py`` checks every import).
"""
