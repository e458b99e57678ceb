"""API request and response schemas that are not tables (the public rungs of the SQLModel ladder)."""
