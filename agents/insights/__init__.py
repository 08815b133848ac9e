"""Insights from the event log: durations and their trends, bottlenecks, anomalies, failure clusters."""
