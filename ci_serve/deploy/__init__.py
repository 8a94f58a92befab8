"""The deploy stage: gate (pure verdicts + a small poll loop), naming (logical <-> physical + colour),
cluster config merge, and the strategies (blue-green, in-place, auto) that write, gate, check and
roll back."""
