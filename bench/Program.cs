using FeitianK8s.Bench;

return args.FirstOrDefault() switch
{
    "append" => await AppendBenchmark.RunAsync(args[1..]),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: FeitianK8s.Bench append [--total-mib 512] [--small-count 5000] [--chunkservers 6] [--racks 3]");
    return 2;
}
