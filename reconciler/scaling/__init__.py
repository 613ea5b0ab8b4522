"""Service auto scaling: scaling policies, schedules, Docker stats and metric sources (ECS reference §7)."""
