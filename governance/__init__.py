"""Governance: the audit trail, promotion rules and lineage of model versions."""
