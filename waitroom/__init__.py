"""The waiting room: join → wait → admit. Signed tickets in arrival order, controlled admission."""
