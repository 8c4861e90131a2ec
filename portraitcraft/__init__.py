"""portraitcraft."""
