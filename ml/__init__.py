"""What every model package shares: its declaration, data split, normalisation, tiling, metrics.

A package in ``model_packages/<name>/`` is only its model definition and entry points; the
logic that must behave identically across packages (and that the platform relies on when it
trains, evaluates and serves them) lives here once. The contract it implements is written
down in ``model_packages/README.md``. Modules that need torch import it themselves, so
reading a package's declaration (:mod:`geomlops.ml.spec`) stays cheap.
"""
