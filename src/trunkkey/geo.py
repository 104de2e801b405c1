"""Places: geofences and the car's position.

Coordinates travel as integers in units of 1e-7 degree (about 1.1 cm at the
equator), never as floats, so that every implementation reads the same
number. Distances are great-circle (haversine) on a sphere of the mean Earth
radius; against the WGS-84 ellipsoid that is within 0.5 % — under 5 m on the
largest geofence trunkkey allows — which is below GPS error and is why the
radius, not the distance, should carry the margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import InvalidRequest

#: Mean Earth radius (IUGG), metres.
EARTH_RADIUS_M = 6_371_008.8
#: Units per degree on the wire.
E7 = 10_000_000
#: The largest geofence radius a token may carry (metres).
MAX_RADIUS_M = 50_000
#: The smallest: GPS is not more precise than this in a car park.
MIN_RADIUS_M = 5


def _check_coordinates(lat_e7: int, lon_e7: int) -> None:
    if type(lat_e7) is not int or type(lon_e7) is not int:
        raise InvalidRequest("coordinates are ints in units of 1e-7 degree")
    if not (-90 * E7 <= lat_e7 <= 90 * E7):
        raise InvalidRequest("latitude must be within [-90, 90] degrees")
    if not (-180 * E7 <= lon_e7 <= 180 * E7):
        raise InvalidRequest("longitude must be within [-180, 180] degrees")


@dataclass(frozen=True, slots=True, kw_only=True)
class Location:
    """Where the car says it is (from GPS: helpful, not proof)."""

    lat_e7: int
    lon_e7: int

    def __post_init__(self) -> None:
        _check_coordinates(self.lat_e7, self.lon_e7)

    @classmethod
    def from_degrees(cls, latitude: float, longitude: float) -> Location:
        if not (math.isfinite(latitude) and math.isfinite(longitude)):
            raise InvalidRequest("coordinates must be finite numbers")
        return cls(lat_e7=round(latitude * E7), lon_e7=round(longitude * E7))

    @property
    def latitude(self) -> float:
        return self.lat_e7 / E7

    @property
    def longitude(self) -> float:
        return self.lon_e7 / E7


@dataclass(frozen=True, slots=True, kw_only=True)
class Geofence:
    """A circle the car must be inside: centre and radius in whole metres."""

    lat_e7: int
    lon_e7: int
    radius_m: int

    def __post_init__(self) -> None:
        _check_coordinates(self.lat_e7, self.lon_e7)
        if type(self.radius_m) is not int or not (
            MIN_RADIUS_M <= self.radius_m <= MAX_RADIUS_M
        ):
            raise InvalidRequest(
                f"geofence radius must be an int from {MIN_RADIUS_M} to {MAX_RADIUS_M} metres"
            )

    @classmethod
    def from_degrees(cls, latitude: float, longitude: float, radius_m: int) -> Geofence:
        centre = Location.from_degrees(latitude, longitude)
        return cls(lat_e7=centre.lat_e7, lon_e7=centre.lon_e7, radius_m=radius_m)

    @property
    def centre(self) -> Location:
        return Location(lat_e7=self.lat_e7, lon_e7=self.lon_e7)

    def contains(self, where: Location) -> bool:
        """True when ``where`` is within the radius (the boundary counts as inside)."""
        return _distance(self.lat_e7, self.lon_e7, where.lat_e7, where.lon_e7) <= self.radius_m

    def within(self, outer: Geofence) -> bool:
        """True when this circle lies entirely inside ``outer``."""
        distance = _distance(self.lat_e7, self.lon_e7, outer.lat_e7, outer.lon_e7)
        return distance + self.radius_m <= outer.radius_m


def distance_m(a: Location, b: Location) -> float:
    """Great-circle distance in metres (haversine, numerically stable for short spans)."""
    return _distance(a.lat_e7, a.lon_e7, b.lat_e7, b.lon_e7)


_RADIANS_PER_E7 = math.pi / 180 / E7
_sin, _cos, _asin, _sqrt = math.sin, math.cos, math.asin, math.sqrt


def _distance(lat1_e7: int, lon1_e7: int, lat2_e7: int, lon2_e7: int) -> float:
    # On raw coordinates, so that a geofence check builds no Location.
    lat1, lat2 = lat1_e7 * _RADIANS_PER_E7, lat2_e7 * _RADIANS_PER_E7
    dlon = (lon2_e7 - lon1_e7) * _RADIANS_PER_E7
    h = _sin((lat2 - lat1) / 2) ** 2 + _cos(lat1) * _cos(lat2) * _sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_M * _asin(min(1.0, _sqrt(h)))
