"""Geography of the simulated city, modelled on Dayton, Ohio.

Centroids are approximate neighborhood centres; street names and hundred-block ranges are the
kind a dispatcher would see there. Dayton's police patrol is split into an EAST and a WEST
division, roughly along the Great Miami River.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Dayton city limits, generously rounded; every generated coordinate stays inside.
LAT_MIN, LAT_MAX = 39.69, 39.82
LON_MIN, LON_MAX = -84.31, -84.12

TIMEZONE = "America/New_York"


@dataclass(frozen=True)
class Neighborhood:
    name: str
    lat: float
    lon: float
    district: str
    weight: float  # relative share of 911 calls
    streets: tuple[str, ...]
    blocks: tuple[int, int]  # hundred-block range, inclusive: (4, 19) -> "4XX" .. "19XX"


NEIGHBORHOODS: tuple[Neighborhood, ...] = (
    Neighborhood("DOWNTOWN", 39.7589, -84.1916, "EAST", 9.0,
                 ("N MAIN ST", "S LUDLOW ST", "E 3RD ST", "W 3RD ST", "S JEFFERSON ST"), (1, 4)),
    Neighborhood("OREGON DISTRICT", 39.7556, -84.1840, "EAST", 4.5,
                 ("E 5TH ST", "WAYNE AVE", "JACKSON ST", "BROWN ST"), (4, 7)),
    Neighborhood("BELMONT", 39.7268, -84.1462, "EAST", 6.0,
                 ("SMITHVILLE RD", "WATERVLIET AVE", "WILMINGTON AVE", "BURLEIGH AVE"), (10, 29)),
    Neighborhood("FIVE OAKS", 39.7828, -84.2068, "WEST", 5.0,
                 ("SALEM AVE", "N MAIN ST", "FIVE OAKS AVE", "CORONA AVE", "NEAL AVE"), (4, 19)),
    Neighborhood("DAYTON VIEW", 39.7718, -84.2145, "WEST", 5.5,
                 ("SALEM AVE", "GRAFTON AVE", "CENTRAL AVE", "HARVARD BLVD"), (5, 16)),
    Neighborhood("WRIGHT-DUNBAR", 39.7573, -84.2158, "WEST", 4.0,
                 ("W 3RD ST", "PAUL LAURENCE DUNBAR ST", "HOME AVE", "EDGEWOOD AVE"), (10, 14)),
    Neighborhood("OLD NORTH DAYTON", 39.7768, -84.1744, "EAST", 5.5,
                 ("VALLEY ST", "TROY ST", "LEO ST", "BRANDT ST", "KEOWEE ST"), (5, 19)),
    Neighborhood("WALNUT HILLS", 39.7392, -84.1650, "EAST", 4.5,
                 ("WYOMING ST", "WAYNE AVE", "CLOVER ST", "WALNUT ST"), (10, 19)),
    Neighborhood("TWIN TOWERS", 39.7468, -84.1702, "EAST", 5.0,
                 ("XENIA AVE", "WYOMING ST", "STEELE AVE", "WAYNE AVE"), (9, 16)),
    Neighborhood("CARILLON", 39.7395, -84.2075, "WEST", 3.0,
                 ("CARILLON BLVD", "S EDWIN C MOSES BLVD", "NICHOLAS RD", "DORR ST"), (1, 12)),
    Neighborhood("WESTWOOD", 39.7632, -84.2602, "WEST", 7.0,
                 ("W 3RD ST", "JAMES H MCGEE BLVD", "OAKRIDGE DR", "LAKEVIEW AVE"), (30, 45)),
    Neighborhood("SANTA CLARA", 39.7872, -84.2262, "WEST", 3.5,
                 ("SANTA CLARA AVE", "SALEM AVE", "PRINCETON DR", "KIPLING DR"), (6, 21)),
    Neighborhood("GRAFTON HILL", 39.7718, -84.2005, "WEST", 2.5,
                 ("GRAFTON AVE", "N MAIN ST", "BENSON DR", "BELLEVIEW AVE"), (1, 9)),
    Neighborhood("HUFFMAN", 39.7578, -84.1672, "EAST", 3.0,
                 ("E 3RD ST", "HUFFMAN AVE", "KEOWEE ST", "MAXWELL AVE"), (9, 16)),
    Neighborhood("LINDEN HEIGHTS", 39.7452, -84.1412, "EAST", 4.0,
                 ("LINDEN AVE", "SMITHVILLE RD", "E 5TH ST", "SPRINGFIELD ST"), (20, 29)),
    Neighborhood("MCPHERSON TOWN", 39.7675, -84.1985, "EAST", 1.5,
                 ("N MAIN ST", "RIVERVIEW AVE", "ORCHARD ST", "BABBITT ST"), (1, 6)),
    Neighborhood("RESIDENCE PARK", 39.7652, -84.2472, "WEST", 4.0,
                 ("HOOVER AVE", "W 3RD ST", "ALBRITTON DR", "RUSSET AVE"), (20, 33)),
    Neighborhood("ROOSEVELT", 39.7498, -84.2352, "WEST", 4.5,
                 ("W 3RD ST", "GERMANTOWN ST", "ABBEY AVE", "ROSEDALE DR"), (14, 26)),
    Neighborhood("SOUTHERN DAYTON VIEW", 39.7682, -84.2302, "WEST", 4.0,
                 ("SALEM AVE", "CATALPA DR", "CORNELL DR", "BROADWAY ST"), (12, 24)),
    Neighborhood("UNIVERSITY ROW", 39.7402, -84.1802, "EAST", 2.5,
                 ("BROWN ST", "STEWART ST", "KIEFABER ST", "LAWNVIEW AVE"), (4, 14)),
    Neighborhood("PATTERSON PARK", 39.7302, -84.1575, "EAST", 2.5,
                 ("WILMINGTON AVE", "PATTERSON RD", "HOLLYWOOD AVE", "SAUNDERS ST"), (10, 22)),
    Neighborhood("MIAMI CHAPEL", 39.7412, -84.2282, "WEST", 3.5,
                 ("MIAMI CHAPEL RD", "NICHOLAS RD", "GETTYSBURG AVE", "DELPHOS AVE"), (4, 20)),
    Neighborhood("FAIRVIEW", 39.8012, -84.2168, "WEST", 3.0,
                 ("N MAIN ST", "FAIRVIEW AVE", "GUMMER AVE", "HOMEWOOD AVE"), (20, 39)),
)  # fmt: skip

_CUM_WEIGHTS: tuple[float, ...] = tuple(
    sum(n.weight for n in NEIGHBORHOODS[: i + 1]) for i in range(len(NEIGHBORHOODS))
)

# Calls land on streets, not at the centroid; ~0.004 degrees is a few city blocks.
_SPREAD_DEG = 0.004


def pick_neighborhood(rng: random.Random) -> Neighborhood:
    """A neighborhood drawn by its share of call volume."""
    return rng.choices(NEIGHBORHOODS, cum_weights=_CUM_WEIGHTS)[0]


def block_address(rng: random.Random, hood: Neighborhood) -> str:
    """A published (privacy-generalized) address such as "12XX W 3RD ST"."""
    hundred = rng.randint(*hood.blocks)
    return f"{hundred}XX {rng.choice(hood.streets)}"


def point_near(rng: random.Random, hood: Neighborhood) -> tuple[float, float]:
    """A (lat, lon) scattered around the centroid, clamped to the city's bounding box."""
    lat = min(max(rng.gauss(hood.lat, _SPREAD_DEG), LAT_MIN), LAT_MAX)
    lon = min(max(rng.gauss(hood.lon, _SPREAD_DEG), LON_MIN), LON_MAX)
    return lat, lon
