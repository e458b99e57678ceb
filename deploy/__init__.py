"""Running Silvertalk as several processes: `python -m deploy.cluster` and the load balancer's config."""
