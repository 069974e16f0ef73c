"""Adapters that deliver OpenLineage events: an HTTP endpoint, a Kafka topic."""
