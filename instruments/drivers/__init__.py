"""Instrument drivers declared the pymeasure way: each property and method names the raw
command it sends; every argument is checked by a pymeasure validator before anything is sent."""
