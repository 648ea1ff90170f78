"""Order-keeping parking (issue 12): a command that must wait long is written to the co-partitioned
parking topic with the time it may run again, the command offset is committed past it, and later
commands of its key park behind it; the parked work comes back when due, in key order.

``records`` is the pure part (headers, the parked set), ``park`` the decisions the processor asks
for, ``replay`` the routine that brings parked commands back.
"""
