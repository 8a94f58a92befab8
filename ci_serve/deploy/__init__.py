"""The deploy stage: one typed view of the cluster (view, ownership), a pure release planner, a pure write
guard, the gate (pure verdicts + a small poll loop), checks, and a short executor (release) that
writes, gates, checks and rolls back; plus the two-cluster mode."""
