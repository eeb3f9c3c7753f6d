"""The waitroom's domain errors: stable codes, HTTP status, Japanese and English messages."""

from __future__ import annotations

from enum import IntEnum

from machiai.errors import AppError, BodyTooLarge, Busy

__all__ = ["BodyTooLarge"]  # shared with booking (machiai.errors); raised by the join


class ScriptError(IntEnum):
    """Negative return codes of the waitroom's Lua scripts (waitroom/lua/*.lua)."""

    NOT_LOADED = -1
    CLOSED = -2
    NOT_OPEN_YET = -3
    BAD_TRANSITION = -4
    INVALID_ARGUMENT = -5
    NOT_ADMITTED = -6
    TURN_EXPIRED = -7
    ALREADY_ENTERED = -8
    ALREADY_ADMITTED = -9  # opt_in-5: the turn came; no "your turn is near" is needed


class StoreUnavailable(Busy):
    """Redis or Postgres did not answer; nothing was written. Retry shortly."""

    code = "busy"


class EventNotFound(AppError):
    code = "event_not_found"
    status = 404
    message_ja = "この予約受付は見つかりませんでした。"
    message_en = "This booking event was not found."


class EventClosed(AppError):
    code = "event_closed"
    status = 409
    message_ja = "この予約受付は終了しました。"
    message_en = "This booking event has closed."


class EventNotOpenYet(AppError):
    code = "event_not_open_yet"
    status = 409
    message_ja = "まだ受付開始前です。開始時刻になってからお越しください。"
    message_en = "This booking event does not accept residents yet."


class TicketMissing(AppError):
    code = "ticket_missing"
    status = 401
    message_ja = "整理券がありません。もう一度列に並んでください。"
    message_en = "No ticket was sent. Please join the line."


class TicketRefused(AppError):
    """A ticket or pass that grants nothing: tampered, expired, or for another event."""

    code = "ticket_invalid"
    status = 403
    message_ja = "整理券が正しくありません。もう一度列に並んでください。"
    message_en = "This ticket is not valid. Please join the line again."


class TicketUnknown(AppError):
    code = "ticket_unknown"
    status = 409
    message_ja = "この整理券の番号は列にありません。もう一度列に並んでください。"
    message_en = "This ticket's number is not in the line. Please join the line again."


class NotAdmittedYet(AppError):
    code = "not_admitted_yet"
    status = 409
    message_ja = "まだ順番が来ていません。このままお待ちください。"
    message_en = "It is not your turn yet. Please keep waiting."


class TurnExpired(AppError):
    code = "turn_expired"
    status = 410
    message_ja = "順番の有効時間が過ぎました。もう一度列に並んでください。"
    message_en = "Your turn has expired. Please join the line again."


class AlreadyEntered(AppError):
    code = "already_entered"
    status = 409
    message_ja = "この整理券ではすでに予約画面に入っています。"
    message_en = "This ticket has already been used to enter booking."


class TooManyRequests(AppError):
    code = "too_many_requests"
    status = 429
    message_ja = "短い間に何度も操作されました。少し待ってから、もう一度お試しください。"
    message_en = "Too many requests. Please wait a moment and try again."

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(headers={"Retry-After": str(retry_after_s)})


class CrossSiteJoin(AppError):
    """A JSON join another site's page sent: no place is handed out (a browser there is sent
    to the waiting page instead, which shows the place it holds or the join button)."""

    code = "cross_site_join"
    status = 403
    message_ja = "ほかのサイトのページからは列に並べません。待合室のページから並んでください。"
    message_en = "A join sent from another site's page is refused. Please join on the waiting page."


class Unauthorized(AppError):
    code = "unauthorized"
    status = 401
    message_ja = "ログインが必要です。"
    message_en = "Staff authentication is required."


class Forbidden(AppError):
    code = "forbidden"
    status = 403
    message_ja = "この操作は許可されていません。"
    message_en = "You are not allowed to do this."


class InvalidInput(AppError):
    code = "invalid_input"
    status = 422
    message_ja = "入力内容に誤りがあります。"
    message_en = "The input is not valid."


class BadTransition(AppError):
    code = "invalid_state_change"
    status = 409
    message_ja = "現在の状態ではこの操作はできません。"
    message_en = "This change is not possible in the event's current state."


class EventExists(AppError):
    code = "event_exists"
    status = 409
    message_ja = "同じIDの予約受付がすでにあります。"
    message_en = "An event with this id already exists."


class AlreadyAdmitted(AppError):
    """A "your turn is near" opt-in after the turn came: no message is needed."""

    code = "already_admitted"
    status = 409
    message_ja = "もう順番が来ています。予約画面へお進みください。"
    message_en = "It is already your turn. Please go to the booking page."


SCRIPT_ERRORS: dict[ScriptError, type[AppError]] = {
    ScriptError.CLOSED: EventClosed,
    ScriptError.NOT_OPEN_YET: EventNotOpenYet,
    ScriptError.BAD_TRANSITION: BadTransition,
    ScriptError.INVALID_ARGUMENT: InvalidInput,
    ScriptError.NOT_ADMITTED: NotAdmittedYet,
    ScriptError.TURN_EXPIRED: TurnExpired,
    ScriptError.ALREADY_ENTERED: AlreadyEntered,
    ScriptError.ALREADY_ADMITTED: AlreadyAdmitted,
}
