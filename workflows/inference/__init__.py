"""Batch inference: plan tiles over an AOI and dates, predict them in shards, publish.

``geomlops infer`` submits the ``geomlops-batch-inference`` WorkflowTemplate; its pods run
``geomlops infer-step plan|predict|publish|report``. Modules: :mod:`.config` (the run's saved
plan and where its objects live), :mod:`.aoi` (the request's area and the model's region),
:mod:`.planner`, :mod:`.worker` (one shard), :mod:`.masks`, :mod:`.tilestore` (done tiles),
:mod:`.publish`, :mod:`.progress`, :mod:`.cli`.
"""
