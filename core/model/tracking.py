"""Where MLflow keeps a package's runs, and the tags a decision leaves on a model version.

One experiment per package, named after it (the registered model carries the same name),
so an approver finds a package's training and evaluation runs together and apart from
every other package's. Runs are found by their id everywhere else (ids are global in
MLflow), so runs recorded in the former shared experiment (``geomlops-train``) are still
found; only what lists a package's runs needs this rule.

A promotion, rejection or rollback is recorded in the audit log; the reconciler mirrors it
onto the MLflow model version with the ``geomlops.decision*`` tags below, so the MLflow UI
shows beside the weights who decided, when and why.
"""

from __future__ import annotations


def experiment_name(package: str) -> str:
    """The MLflow experiment of package ``package``'s training and evaluation runs."""
    return package


DECISION_TAG = "geomlops.decision"
"""The last decision about a model version: ``promote``, ``reject`` or ``rollback``."""
DECISION_REASON_TAG = "geomlops.decision_reason"
"""The reason the approver gave for it."""
DECIDED_BY_TAG = "geomlops.decided_by"
"""The identity that took it (behind the credential in use)."""
DECIDED_AT_TAG = "geomlops.decided_at"
"""When it was recorded in the audit log (ISO 8601, UTC)."""
DECISION_TAGS = (DECISION_TAG, DECISION_REASON_TAG, DECIDED_BY_TAG, DECIDED_AT_TAG)
