"""NObLe: localization as classification over fine cells of the floor plan.

Modules: ``model`` (network, cells, ensemble), ``decoding`` (cell probabilities -> coordinates, on the
plan), ``data`` (UJIIndoorLoc splits), ``train`` (training, checkpoints), ``selection`` (leave-users-out
cross-validation), ``baselines`` (weighted kNN, MLP regression), ``metrics``, ``plots``, ``results`` and
``results_doc`` (docs/results/noble.*), ``cli`` (``python -m training noble``).
"""
