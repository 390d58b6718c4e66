// Every test class runs real server processes; on a small machine they must not compete.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
