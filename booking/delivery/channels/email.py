"""The e-mail channel: one message per delivery over SMTP (aiosmtplib).

The Message-ID is made from the delivery's idempotency key, so a resend after a lost
answer is the same message to a mail system that drops duplicates by Message-ID."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from booking.delivery.channels.base import SendFailed
from booking.delivery.messages import Message
from booking.delivery.settings import SmtpSettings
from booking.store.pg_delivery import Claimed


def email_message(sender: str, delivery: Claimed, message: Message) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = delivery.recipient
    mail["Subject"] = message.subject
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    domain = sender.rpartition("@")[2] or "localhost"
    mail["Message-ID"] = f"<{delivery.idempotency_key}@{domain}>"
    mail["Content-Language"] = message.locale
    mail["X-Machiai-Topic"] = delivery.topic
    mail.set_content(message.body, charset="utf-8")
    return mail


class EmailChannel:
    def __init__(self, smtp: SmtpSettings, timeout_s: float) -> None:
        self.smtp = smtp
        self.timeout_s = timeout_s

    async def send(self, delivery: Claimed, message: Message) -> None:
        if self.smtp.host is None:
            raise SendFailed("no SMTP server: set MACHIAI_SMTP_HOST or MACHIAI_SMTP_URL")
        mail = email_message(self.smtp.sender, delivery, message)
        try:
            await aiosmtplib.send(
                mail,
                hostname=self.smtp.host,
                port=self.smtp.port,
                username=self.smtp.username,
                password=self.smtp.password,
                use_tls=self.smtp.implicit_tls,
                start_tls=self.smtp.starttls,
                timeout=self.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            # The server refused the address itself: sending again cannot help.
            codes = [r.code for r in exc.recipients]
            raise SendFailed(f"recipient refused ({codes})", permanent=all(
                c >= 500 for c in codes)) from None  # fmt: skip
        except aiosmtplib.SMTPResponseException as exc:
            raise SendFailed(f"SMTP {exc.code} {exc.message[:200]}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise SendFailed(f"SMTP: {type(exc).__name__}: {str(exc)[:200]}") from None

    async def aclose(self) -> None:
        return None
