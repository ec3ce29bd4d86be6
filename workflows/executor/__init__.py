"""The local Argo executor: runs rendered Argo manifests as local processes.

It interprets the manifest Argo would run (not a second definition of the workflow), so
the same WorkflowTemplate runs on a cluster and, unchanged, on one machine. See
:class:`LocalExecutor` for the API and :mod:`.support` for what is supported.
"""

from geomlops.workflows.executor.api import LocalExecutor
from geomlops.workflows.executor.model import NodePhase, NodeType, RunPhase
from geomlops.workflows.executor.progress import ProgressEvent, RichProgress

__all__ = ["LocalExecutor", "NodePhase", "NodeType", "ProgressEvent", "RichProgress", "RunPhase"]
