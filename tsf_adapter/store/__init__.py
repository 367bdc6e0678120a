"""The series store: each target's series on its regular grid in ring buffers, aggregated on ingest.

Above ``config`` (a target's description is its ``TargetConfig``) and ``core``
(the grid rule, ``GridBatch``); it never imports the models or the wire.
"""
