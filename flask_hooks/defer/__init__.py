"""Hand handlers to a real task queue: ``@hooks.on("x", defer=CeleryQueue())``.

Importing this package imports neither Flask's request machinery nor
Celery or RQ; each adapter imports its library when a queue is created
or used.
"""

from .base import Deferral as Deferral
from .base import HandlerFailed as HandlerFailed
from .base import Held as Held
from .base import Job as Job
from .celery import CeleryQueue as CeleryQueue
from .rq import RQQueue as RQQueue
