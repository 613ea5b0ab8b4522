"""Metric alarms (the `Alarm` kind) in CloudWatch's terms: evaluation, the monitor that samples and
evaluates them in the daemon, their persisted states and the DescribeAlarms-shaped report."""
