"""Scheduled and triggered jobs (APScheduler 3.x), recorded as JobRun rows."""
