"""Argo WorkflowTemplates defined with Hera, and the local executor."""
