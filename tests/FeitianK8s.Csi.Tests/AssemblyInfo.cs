// Every test class shares one cluster and mounts real filesystems: no parallel tests.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
