"""Leader-election adapters that talk to something other than the store."""
