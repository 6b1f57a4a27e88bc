"""Sweeper: deletes what has expired and keeps Knative revisions within retention."""
