using FeitianK8s.Core.Common;
using System.Globalization;

namespace FeitianK8s.ChunkServer.Hosting;

/// <summary>Turns the chunk server's command line into <see cref="ChunkServerOptions"/>.</summary>
public static class CommandLine
{
    public const string Usage =
        "usage: FeitianK8s.ChunkServer --data DIR[,DIR...] --master http://HOST:PORT[,http://HOST:PORT...] --node NODE --rack RACK " +
        "[--listen 127.0.0.1] [--port 0] [--http-port 0] [--advertise http://HOST:PORT] [--chunk-size 64MiB] " +
        "[--block-size 4KiB] [--capacity BYTES] [--reserve 1MiB] [--heartbeat-ms 1000] " +
        "[--rebuild-bandwidth BYTES_PER_SECOND (e.g. 100Mi; 0 = unlimited)] [--rebuild-concurrency 2] " +
        "[--scrub-bandwidth BYTES_PER_SECOND (default 4Mi; 0 = off)] [--tls-ca CA.crt --tls-cert chunkserver.crt --tls-key chunkserver.key]";

    public static ChunkServerOptions Parse(IReadOnlyList<string> args)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal))
            {
                throw new FormatException($"unexpected argument '{arg}'");
            }
            string name, value;
            var eq = arg.IndexOf('=', StringComparison.Ordinal);
            if (eq > 0)
            {
                (name, value) = (arg[2..eq], arg[(eq + 1)..]);
            }
            else
            {
                if (i + 1 >= args.Count)
                {
                    throw new FormatException($"{arg} needs a value");
                }
                (name, value) = (arg[2..], args[++i]);
            }
            if (!Known.Contains(name))
            {
                throw new FormatException($"unknown option --{name}");
            }
            values[name] = value;
        }

        string Required(string name) => values.TryGetValue(name, out var v) && v.Length > 0 ? v : throw new FormatException($"--{name} is required");
        string? Optional(string name) => values.GetValueOrDefault(name);

        var dirs = Required("data").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (dirs.Length == 0)
        {
            throw new FormatException("--data needs at least one directory");
        }
        var blockSize = Optional("block-size") is { } b ? ByteSize.Parse(b) : 4096;
        if (blockSize is < 512 or > 1 << 20)
        {
            throw new FormatException($"--block-size {blockSize} must be between 512 B and 1 MiB");
        }
        return new ChunkServerOptions
        {
            DataDirs = dirs,
            MasterAddress = Required("master"),
            Node = Required("node"),
            Rack = Required("rack"),
            ListenAddress = Optional("listen") ?? "127.0.0.1",
            GrpcPort = Port(Optional("port"), "port"),
            HttpPort = Port(Optional("http-port"), "http-port"),
            AdvertiseAddress = Optional("advertise"),
            ChunkSize = Optional("chunk-size") is { } c ? ByteSize.Parse(c) : 64L << 20,
            BlockSize = (int)blockSize,
            CapacityBytes = Optional("capacity") is { } cap ? ByteSize.Parse(cap) : null,
            DiskReserveBytes = Optional("reserve") is { } r ? ByteSize.Parse(r) : 1L << 20,
            HeartbeatInterval = TimeSpan.FromMilliseconds(Optional("heartbeat-ms") is { } h ? int.Parse(h, CultureInfo.InvariantCulture) : 1000),
            RebuildBandwidthBytesPerSecond = RebuildBandwidth(Optional("rebuild-bandwidth")),
            RebuildConcurrency = RebuildConcurrency(Optional("rebuild-concurrency")),
            ScrubBandwidthBytesPerSecond = Optional("scrub-bandwidth") is { } scrub
                ? ByteSize.TryParseQuantity(scrub, out var scrubBytes) ? scrubBytes
                    : throw new FormatException($"--scrub-bandwidth '{scrub}' is not bytes per second (examples: 4194304, 4Mi, 10M; 0 = off)")
                : ChunkServerOptions.DefaultScrubBandwidth,
            Tls = Tls(Optional("tls-ca"), Optional("tls-cert"), Optional("tls-key")),
        };
    }

    private static Core.Security.ComponentTls? Tls(string? ca, string? cert, string? key)
    {
        try
        {
            return Core.Security.ComponentTls.FromFlags(ca, cert, key, Core.Security.ComponentRoles.ChunkServer);
        }
        catch (ArgumentException error)
        {
            throw new FormatException(error.Message, error);
        }
    }

    private static readonly HashSet<string> Known =
    [
        "data", "master", "node", "rack", "listen", "port", "http-port", "advertise", "chunk-size", "block-size",
        "capacity", "reserve", "heartbeat-ms", "rebuild-bandwidth", "rebuild-concurrency", "scrub-bandwidth",
        "tls-ca", "tls-cert", "tls-key",
    ];

    /// <summary>Bytes per second as plain digits or a Kubernetes quantity (100Mi = 100×2²⁰, 100M = 100×10⁶); 0 = unlimited.</summary>
    private static long RebuildBandwidth(string? text) =>
        text is null ? 0
        : ByteSize.TryParseQuantity(text, out var bytes) ? bytes
        : throw new FormatException($"--rebuild-bandwidth '{text}' is not bytes per second (examples: 104857600, 100Mi, 1Gi, 500M; 0 = unlimited)");

    private static int RebuildConcurrency(string? text)
    {
        if (text is null)
        {
            return ChunkServerOptions.DefaultRebuildConcurrency;
        }
        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is >= 1 and <= ChunkServerOptions.MaxRebuildConcurrency
            ? n
            : throw new FormatException($"--rebuild-concurrency '{text}' must be a whole number from 1 to {ChunkServerOptions.MaxRebuildConcurrency}");
    }

    private static int Port(string? text, string name)
    {
        if (text is null)
        {
            return 0;
        }
        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port <= 65535
            ? port
            : throw new FormatException($"--{name} '{text}' is not a port number");
    }
}
