"""The clinic console (role ``clinic``): a clinic's own day, times and publishing.

Server-rendered, Japanese first with the English switch, every form a plain POST → 303 →
GET carrying the console's CSRF secret (booking.console.common), working without
JavaScript. A clinic account is tied to one clinic: the services take that clinic with
every call, so another clinic's slot or booking is not found.

booking.console.clinic_day      /staff/clinic/day (list, print, attendance), day.csv
booking.console.clinic_slots    /staff/clinic/slots (capacity, close with a confirmation,
                                reopen)
booking.console.clinic_publish  /staff/clinic/plan (weekly plan), /staff/clinic/import
                                (CSV); each previewed before anything is written
"""

from __future__ import annotations

from starlette.routing import Route

from booking.console import clinic_day, clinic_publish, clinic_slots
from booking.console.clinic_common import DAY, DAY_CSV, IMPORT, PLAN, SLOTS


def routes() -> list[Route]:
    return [
        Route(DAY, clinic_day.day_list, methods=["GET"]),
        Route(DAY_CSV, clinic_day.day_csv, methods=["GET"]),
        Route(DAY + "/attendance", clinic_day.attendance, methods=["POST"]),
        Route(SLOTS, clinic_slots.slots_list, methods=["GET"]),
        Route(SLOTS + "/capacity", clinic_slots.change_capacity, methods=["POST"]),
        Route(clinic_slots.CLOSE, clinic_slots.close_confirm, methods=["GET"]),
        Route(clinic_slots.CLOSE, clinic_slots.close, methods=["POST"]),
        Route(SLOTS + "/reopen", clinic_slots.reopen, methods=["POST"]),
        Route(PLAN, clinic_publish.plan_form, methods=["GET"]),
        Route(PLAN + "/preview", clinic_publish.plan_preview, methods=["POST"]),
        Route(PLAN + "/publish", clinic_publish.plan_publish, methods=["POST"]),
        Route(IMPORT, clinic_publish.import_form, methods=["GET"]),
        Route(IMPORT + "/preview", clinic_publish.import_preview, methods=["POST"]),
        Route(IMPORT + "/apply", clinic_publish.import_apply, methods=["POST"]),
    ]
