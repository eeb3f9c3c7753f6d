"""machiai (待合): a load-tolerant reservation system with a virtual waiting room.

This package holds what both services share and what runs them locally: the
environment parser, secrets, the error base, the Postgres schema and its
migrations, the embedded Redis/Postgres servers and the `machiai` CLI.
"""
