"""A lean load generator: the locustfile's residents, by the hundred thousand, in one process.

``python -m loadtests.lean`` (the harness starts it for profiles whose ``generator`` is
``lean``) reads the locustfile's ``LT_*`` variables and writes the same resident records.
"""
