"""NObLe: localization as classification over fine cells of the floor plan."""
