using FeitianK8s.Bench;

return args.FirstOrDefault() switch
{
    "append" => await AppendBenchmark.RunAsync(args[1..]),
    "s3put" => await S3PutBenchmark.RunAsync(args[1..]),
    "crc" => CrcBenchmark.Run(args[1..]),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: FeitianK8s.Bench append [--total-mib 512] [--small-count 5000] [--chunkservers 6] [--racks 3]");
    Console.Error.WriteLine("       FeitianK8s.Bench s3put --file F --target s3://BUCKET[/PREFIX] --endpoint URL [--object-size 1048576] [--parallel 8]");
    Console.Error.WriteLine("       FeitianK8s.Bench crc [--rounds 7] [--round-ms 200]");
    return 2;
}
