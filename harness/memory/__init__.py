"""Memory: what a workload holds, by category — forecast on the meta device and measured in a run."""
