"""Speech and language engines behind small streaming protocols (see `base`)."""
