"""Plan before you spend: recommended settings, memory, time and cost, before a run."""
