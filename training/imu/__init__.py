"""IMU tracking: the walk simulator, pedestrian dead reckoning (calibrated at rest), the map-matching
particle filter (``mapmatch``) and the trackers."""
