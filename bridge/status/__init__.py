"""``bridge status ID`` and ``GET /v1/commands/{id}``: what became of one command, by its id.

The story is assembled by pure functions (:mod:`bridge.status.facts`, :mod:`bridge.status.story`)
from the records the bridge already keeps; the Kafka reads are at the edge
(:mod:`bridge.status.scan`, :mod:`bridge.status.lookup`); the admin listener is
:mod:`bridge.status.admin`.
"""
