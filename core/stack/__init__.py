"""The local stack: PostgreSQL+PgSTAC, SeaweedFS, MLflow and the STAC API on loopback."""
