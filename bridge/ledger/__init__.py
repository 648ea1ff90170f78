"""The command ledger: a command id runs once, across duplicates, redeliveries, crashes and rebalances.

- :mod:`bridge.ledger.entries` the ledger records (codec, fingerprint), pure;
- :mod:`bridge.ledger.index` the compact in-memory index of one partition, pure;
- :mod:`bridge.ledger.rules` what a remembered id means for a new record, pure;
- :mod:`bridge.ledger.store` restore, writes and admission (Kafka I/O);
- :mod:`bridge.ledger.startup` the partition-count check at start-up.
"""
