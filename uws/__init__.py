"""Generic UWS 1.1 job service on Dramatiq. Knows nothing about cutouts.

An application registers job kinds (``uws.kinds.JobKind``) with a ``UWSService``,
attaches it to a Dramatiq broker, and mounts ``JobRoutes`` for each kind.
"""

from uws.kinds import JobContext, JobInterrupted, JobKind
from uws.routes import JobRoutes
from uws.service import UWSConfig, UWSService

__all__ = ["JobContext", "JobInterrupted", "JobKind", "JobRoutes", "UWSConfig", "UWSService"]
