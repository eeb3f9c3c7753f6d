"""The staff consoles (clinic, call centre, municipal administrator): server-rendered pages
on booking's services, signed in with a session cookie (booking.console.common)."""
