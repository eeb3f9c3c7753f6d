"""The booking service: session → search → hold (Redis Lua) → confirm (Postgres) → booking."""
