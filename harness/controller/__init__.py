"""Controller: plan jobs, schedule them on agents, collect results."""
