"""Order-keeping parking (issue 12): a command that must wait long is written to the co-partitioned
parking topic with the time it may run again, the command offset is committed past it, and later
commands of its key park behind it; the parked work comes back when due, in key order.

``records`` is the pure part (headers, the parked set), ``state`` why a command parks and its parked
record (asked by the processor's desk, :mod:`bridge.pipeline.desk`), ``replay`` the routine that brings
parked commands back. Parking reads the pipeline's runtimes and decisions; the pipeline never imports it.
"""
