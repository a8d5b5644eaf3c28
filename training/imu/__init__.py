"""IMU tracking: the walk simulator, pedestrian dead reckoning and the trackers."""
