"""Lifecycle events: CloudEvents 1.0, delivered to the sinks of ``mlops.yaml``'s ``notifications``.

    from mlops.events import emit, model_subject
    emit(project, store, root, "model.promoted", model_subject("wine-classifier", 3), {...})

* ``cloudevent`` — the event (``dev.mlops.<name>``) and its names;
* ``sinks`` — the ``EventSink`` protocol, the time budget, building sinks from the configuration;
* ``log``, ``webhook``, ``github_sink`` — the three kinds of sink;
* ``outbox`` — events waiting in the store for a sink that failed;
* ``emit`` — ``emit`` and ``flush``, which never fail their caller.
"""

from mlops.events.cloudevent import NAMES, CloudEvent, endpoint_subject, model_subject, pipeline_subject
from mlops.events.emit import Report, emit, flush
from mlops.events.sinks import Limits

__all__ = ["NAMES", "CloudEvent", "Limits", "Report", "emit", "endpoint_subject", "flush", "model_subject",
           "pipeline_subject"]
