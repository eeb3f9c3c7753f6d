"""Words of the waiting page, Japanese first; plain and short for elderly residents."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "ja": {
        "title": "順番待ち",
        "ahead": "あなたの前に {n} 人",
        "next": "次があなたの番です。",
        "wait": "待ち時間の目安：約 {w}",
        "min": "{n} 分",
        "hour": "{h} 時間 {m} 分",
        "slots": "残りの予約枠：{n}",
        "paused": "受付を一時停止しています。順番はそのまま残ります。",
        "sold_out": "予約枠がなくなりました。キャンセルなどで枠が出たら、この順番で再開します。",
        "prequeue": "受付開始前です。開始時刻に、今並んでいる方の順番をくじで決めます。",
        "opens_in": "受付開始まで あと約 {w}",
        "admitted": "あなたの番です。予約画面へ進んでください。",
        "enter_within": "{w} 以内に進んでください。",
        "enter": "予約画面へ進む",
        "expired": "順番の有効時間が過ぎました。もう一度並んでください。",
        "closed": "この予約受付は終了しました。",
        "keep": "このページを開いたままお待ちください。",
        "auto": "このページは自動で更新されます。閉じずにお待ちください。",
        "no_reload": "再読み込みをしても順番は早くなりません。",
        "join": "列に並ぶ",
        "join_note": "ボタンを押すと、並んだ順に案内します。",
        "busy": "ただいま混み合っています。このページを開いたままお待ちください。"
        "自動で再表示します。",
        "bad_ticket": "整理券が確認できませんでした。もう一度並んでください。",
        "not_found": "この予約受付は見つかりませんでした。",
        "other_lang_label": "English",
    },
    "en": {
        "title": "Waiting line",
        "ahead": "People ahead of you: {n}",
        "next": "You are next.",
        "wait": "Estimated wait: about {w}",
        "min": "{n} min",
        "hour": "{h} h {m} min",
        "slots": "Booking places left: {n}",
        "paused": "Admission is paused. Your place is kept.",
        "sold_out": "No booking places are left. If places come back, the line resumes in "
        "this order.",
        "prequeue": "Booking has not opened yet. At opening, everyone waiting now is placed "
        "in a random order.",
        "opens_in": "Opens in about {w}",
        "admitted": "It is your turn. Please go to the booking page.",
        "enter_within": "Please go within {w}.",
        "enter": "Go to booking",
        "expired": "Your turn has expired. Please join the line again.",
        "closed": "This booking event has closed.",
        "keep": "Please keep this page open.",
        "auto": "This page updates by itself. Please keep it open.",
        "no_reload": "Reloading the page does not move you forward.",
        "join": "Join the line",
        "join_note": "Press the button; you will be called in the order you joined.",
        "busy": "The service is busy. Please keep this page open; it will refresh by itself.",
        "bad_ticket": "Your ticket could not be read. Please join the line again.",
        "not_found": "This booking event was not found.",
        "other_lang_label": "日本語",
    },
}

# Only what the page's script needs (keeps the page small).
SCRIPT_KEYS = ("ahead", "next", "wait", "min", "hour", "slots", "paused", "sold_out", "prequeue",
               "admitted", "expired", "closed", "keep")  # fmt: skip


def duration(seconds: int, lang: str) -> str:
    t = TEXTS[lang]
    minutes = max(1, -(-seconds // 60))
    if minutes < 60:
        return t["min"].format(n=minutes)
    return t["hour"].format(h=minutes // 60, m=minutes % 60)
