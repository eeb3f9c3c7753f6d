"""Locust scenarios of an opening-day surge; HTTP only, no imports of the apps."""
