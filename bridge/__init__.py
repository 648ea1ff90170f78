"""workflow-bridge: Kafka commands in, SaaS workflow calls out, one outcome event per command."""

__version__ = "0.1.0"
