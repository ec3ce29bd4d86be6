"""The steps of the platform's workflows: each one CLI call on a saved, versioned config."""
