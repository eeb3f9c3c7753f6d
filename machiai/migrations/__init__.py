"""Versioned SQL migrations, applied in file-name order by :mod:`machiai.migrate`."""
