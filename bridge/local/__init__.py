"""The embedded local stack: a Tansu broker process, topic creation, the sandbox and demo commands."""
