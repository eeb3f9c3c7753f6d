"""Where a delivery goes: one module per channel, each with ``send(claimed, message)``
raising :class:`booking.delivery.channels.base.SendFailed` on anything but success."""
