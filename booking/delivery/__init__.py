"""The outbox's delivery: a worker that fans outbox rows out into deliveries per channel
(log, e-mail, webhook) and sends them at least once, with retries and a dead state.
README "Notifications" says how to run and configure it."""
