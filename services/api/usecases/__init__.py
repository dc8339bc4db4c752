"""The API's use cases: every write the control plane makes, each one transaction.

Routes validate the request, call one use case (or a registry read), and convert the
result. Only the use cases commit, and a job's message goes out only after its row is
committed (docs/decisions/0012-api-use-cases.md).
"""
