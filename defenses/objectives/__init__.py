"""The training methods, one file each.

Each module holds one ``@register_objective`` class (:class:`defenses.objective.Objective`)
declaring its name, description and hyper-parameters. The registry
(:data:`defenses.objective.OBJECTIVES`) imports every module of this folder on its first
lookup, so adding a method is adding a file here: the configuration, ``robustness harden``
(its ``--method`` choices and flags) and the tests pick it up from the declaration.
"""
