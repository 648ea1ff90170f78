"""Putting failed work back: ``bridge dlq list|show|replay`` and ``bridge redrive``.

``select`` holds the pure choices (filters, replay decisions, histograms), ``kafka`` the reading and
writing, ``dlq`` and ``outcomes`` the two workflows, ``report`` the lines, logs and metrics of a run.
"""
