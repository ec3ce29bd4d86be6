"""The platform's HTTP door for people and programs that are not the CLI (DESIGN.md §10).

OGC API - Processes (jobs are workflow runs, submitted through the same Argo API as
``geomlops infer``), TiTiler tiles of imagery and prediction COGs, http hrefs for assets, and
the map page. Built by :func:`geomlops.gateway.app.create_app`.
"""
