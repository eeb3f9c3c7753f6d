"""``python -m loadtests.lean``: play a profile's residents against a running machiai.

Reads what the locustfile reads (the harness sets them):

    LT_WAITROOM_URL, LT_BOOKING_URL   base URLs of the two services (plain HTTP)
    LT_PROFILE                        JSON of a loadtests.profiles.Profile
    LT_DATASET                        JSON of a loadtests.seed.Dataset
    LT_RECORDS_DIR                    where the residents' journeys go (JSON lines)
    LT_OUT_DIR                        where lean_stats.csv and the other figures go
                                      (default: the records folder's parent)
    LT_LEAN_LANES                     connections to the waitroom and to booking,
                                      "WAITROOM,BOOKING" (default 512,64)

Residents only: the profile's operators, clinic staff and admins are locust's.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from loadtests.lean.client import Origin
from loadtests.lean.engine import Engine, lanes_from
from loadtests.lean.scenario import Scenario
from loadtests.lean.stats import Stats


def main() -> int:
    records = Path(os.environ.get("LT_RECORDS_DIR", "records"))
    out = Path(os.environ.get("LT_OUT_DIR", str(records.parent)))
    scenario = Scenario(
        Origin.from_url(os.environ.get("LT_WAITROOM_URL", "http://127.0.0.1:8000")),
        Origin.from_url(os.environ.get("LT_BOOKING_URL", "http://127.0.0.1:8001")),
        json.loads(os.environ["LT_PROFILE"]),
        json.loads(os.environ["LT_DATASET"]),
        Stats(),
    )
    waitroom_lanes, booking_lanes = lanes_from(os.environ.get("LT_LEAN_LANES"))
    engine = Engine(scenario, records, out, waitroom_lanes, booking_lanes)
    try:
        import uvloop
    except ImportError:  # uvicorn[standard] brings it on Linux; plain asyncio works too
        asyncio.run(engine.run())
    else:
        uvloop.run(engine.run())
    print(
        f"lean: {engine.arrived} residents arrived, {engine.admitted} admitted, "
        f"{engine.left} left, {len(engine.live)} still on their way at the end; "
        f"{scenario.stats.requests()} requests",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
