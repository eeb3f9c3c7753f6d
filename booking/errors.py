"""Booking's domain errors: a stable code, an HTTP status and a message in ja and en."""

from __future__ import annotations

from booking.domain import Refusal
from machiai.errors import AppError, BadRequest, BodyTooLarge, Busy, NotFound

__all__ = ["AppError", "BadRequest", "BodyTooLarge", "Busy", "NotFound", "refused"]


class Invalid(AppError):
    code = "invalid_input"
    status = 422
    message_ja = "入力内容に誤りがあります。"
    message_en = "The input is not valid."


class Unauthorized(AppError):
    code = "unauthorized"
    status = 401
    message_ja = "ログインが必要です。もう一度やり直してください。"
    message_en = "Authentication is required."


class LoginRefused(AppError):
    code = "login_refused"
    status = 401
    message_ja = "ログイン ID またはパスワードが違います。"
    message_en = "Wrong login or password."


class Forbidden(AppError):
    code = "forbidden"
    status = 403
    message_ja = "この操作は許可されていません。"
    message_en = "You are not allowed to do this."


class PassInvalid(AppError):
    code = "pass_invalid"
    status = 401
    message_ja = "入場券が無効か期限切れです。待合室からやり直してください。"
    message_en = "The admission pass is invalid or expired. Please rejoin the waiting room."


class PassUsed(AppError):
    code = "pass_used"
    status = 409
    message_ja = "この入場券はすでに使われています。"
    message_en = "This admission pass has already been used."


class IdentityRefused(AppError):
    """The same answer for unknown voucher, wrong birth date and ineligible: no oracle."""

    code = "identity_refused"
    status = 403
    message_ja = "接種券番号または生年月日が確認できませんでした。"
    message_en = "The voucher number or birth date could not be verified."


class Throttled(AppError):
    code = "too_many_attempts"
    status = 429
    message_ja = "試行回数が多すぎます。しばらくしてからお試しください。"
    message_en = "Too many attempts. Please wait and try again."

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(headers={"Retry-After": str(max(1, retry_after_s))})


class SessionExpired(AppError):
    code = "session_expired"
    status = 401
    message_ja = "予約の受付時間が終了しました。もう一度お並びください。"
    message_en = "Your booking session has ended. Please queue again."


class NotAdmitted(AppError):
    code = "not_admitted"
    status = 403
    message_ja = "新しく予約・変更するには、待合室の列にお並びください。"
    message_en = "To book or change a booking, please join the waiting room's line."


class HouseholdFull(AppError):
    code = "household_full"
    status = 409
    message_ja = "ご家族は3人まで追加できます。"
    message_en = "You can add up to 3 family members."


class SlotFull(AppError):
    code = "slot_full"
    status = 409
    message_ja = "この枠は満員です。別の枠をお選びください。"
    message_en = "This slot is full. Please choose another."


class SlotClosed(AppError):
    code = "slot_closed"
    status = 409
    message_ja = "この枠は受付を終了しています。"
    message_en = "This slot is closed for booking."


class SlotNotOpen(AppError):
    code = "slot_not_bookable"
    status = 409
    message_ja = "この枠は現在予約を受け付けていません（受付期間外または過去の枠）。"
    message_en = "This slot cannot be booked now (outside its window or in the past)."


class HoldExists(AppError):
    code = "hold_exists"
    status = 409
    message_ja = "すでに仮押さえ中の枠があります。先にそれを確定するか解除してください。"
    message_en = "You already hold a slot. Confirm or release it first."


class HoldExpired(AppError):
    code = "hold_expired"
    status = 409
    message_ja = "仮押さえの期限が切れました。もう一度枠を選んでください。"
    message_en = "Your hold has expired. Please choose a slot again."


class ExtendedBefore(AppError):
    code = "hold_extended_before"
    status = 409
    message_ja = "仮押さえの延長は1回までです。"
    message_en = "A hold can be extended once."


class AlreadyBooked(AppError):
    code = "already_booked"
    status = 409
    message_ja = "この回の接種はすでに予約済みです。"
    message_en = "You already have a booking for this dose."


class DoseRule(AppError):
    code = "dose_rule"
    status = 409
    message_ja = "接種間隔または接種回数の条件を満たしていません。"
    message_en = "This slot does not satisfy the dose order or interval rules."


class NoBooking(AppError):
    code = "no_booking"
    status = 404
    message_ja = "予約が見つかりません。"
    message_en = "No booking was found."


class BookingState(AppError):
    code = "booking_state"
    status = 409
    message_ja = "この予約の状態ではその操作はできません。"
    message_en = "The booking is not in a state that allows this."


class AttendanceTooEarly(AppError):
    code = "attendance_too_early"
    status = 409
    message_ja = "来院状況は予約日の当日から記録できます。"
    message_en = "Attendance can be recorded from the day of the appointment on."


class CapacityBelowBooked(AppError):
    code = "capacity_below_booked"
    status = 409
    message_ja = "定員を予約済みの人数より少なくすることはできません。"
    message_en = "Capacity cannot be set below the number already booked."


class IdempotencyReused(AppError):
    code = "idempotency_key_reused"
    status = 422
    message_ja = "同じ Idempotency-Key が別の内容で使われました。"
    message_en = "This Idempotency-Key was used with a different request."


class CsvInvalid(AppError):
    code = "csv_invalid"
    status = 422
    message_ja = "CSV に誤りがあります。どの行も登録されていません。"
    message_en = "The CSV has errors; nothing was imported."


class RemovalsUnconfirmed(AppError):
    """A replace would remove another number of residents than the admin confirmed."""

    code = "removals_unconfirmed"
    status = 409

    def __init__(self, removed: int, expected: int | None) -> None:
        super().__init__(
            f"Replacing the registry with this file removes {removed} residents. Preview it "
            f"(dry_run=true) and send expect_removed={removed} to confirm.",
            f"この名簿で置き換えると {removed} 人が名簿から削除されます。プレビュー"
            f"（dry_run=true）で確認のうえ、expect_removed={removed} を付けて送信してください。",
            detail={"removed": removed, "expect_removed": expected},
        )


class Conflict(AppError):
    code = "conflict"
    status = 409
    message_ja = "ほかのデータと重複しています。"
    message_en = "This conflicts with existing data."


# What a script's refusal means to the client (NOT_LOADED: Redis lost the slot and it
# could not be mirrored again in time).
REFUSALS: dict[Refusal, type[AppError]] = {
    Refusal.NOT_LOADED: Busy,
    Refusal.CLOSED: SlotClosed,
    Refusal.NOT_OPEN: SlotNotOpen,
    Refusal.ENDED: SlotNotOpen,
    Refusal.FULL: SlotFull,
    Refusal.HOLD_EXPIRED: HoldExpired,
    Refusal.HOLD_EXISTS: HoldExists,
    Refusal.PASS_USED: PassUsed,
    Refusal.EXTENDED_BEFORE: ExtendedBefore,
}


def refused(code: Refusal) -> AppError:
    """The domain error for a script's refusal: the one map from refusals to errors."""
    return REFUSALS[code]()
