"""Clients of the Silvertalk service: the browser call page (`clients/web`) and the command line."""
