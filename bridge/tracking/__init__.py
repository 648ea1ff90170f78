"""Tracking: follow every started workflow to its end and publish its lifecycle events.

- :mod:`bridge.config.tracking` per-target tracking settings (imported by :mod:`bridge.config.settings`);
- :mod:`bridge.tracking.entries` the tracked-workflow entries of the ledger topic (codec), pure;
- :mod:`bridge.tracking.schedule` the timer heap and the backoff of every tracked workflow, pure;
- :mod:`bridge.tracking.events` lifecycle events (CloudEvents), pure;
- :mod:`bridge.tracking.reads` which status read serves which target, pure;
- :mod:`bridge.tracking.policy` what one reading means for one tracked workflow, pure;
- :mod:`bridge.tracking.tracker` the scheduler loop, the polls and the writes (I/O).

The status reads themselves are pure functions in each provider module (``build_status_request``,
``classify_status``); :mod:`bridge.providers.readings` holds the states they map to.
"""
