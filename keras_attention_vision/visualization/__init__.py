"""Pictures of attention: glimpse paths, attention-map overlays, samples."""
