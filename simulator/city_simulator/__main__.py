"""``python -m city_simulator``: serve the simulated city's systems (``--help`` for options)."""

import sys

from city_simulator.server import main

sys.exit(main())
