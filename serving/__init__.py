"""Seldon model component and SeldonDeployment generation."""
