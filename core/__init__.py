"""The vocabulary every Kiln package shares: error kinds and the enums of job state, task
and data kind. It imports nothing of Kiln's, so training and registry may both use it."""
