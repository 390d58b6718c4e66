using FeitianK8s.Core.Common;
using System.Globalization;

namespace FeitianK8s.Master.Hosting;

/// <summary>Parses the master's command line into <see cref="MasterOptions"/>; errors are ArgumentException with the reason.</summary>
public static class CommandLine
{
    public const string Usage =
        "usage: FeitianK8s.Master --data DIR [--listen 127.0.0.1] [--port 0] [--http-port 0] [--chunk-size 64MiB] [--replicas 3] [--heartbeat-timeout 5s]\n" +
        "       [--peers HOST:PORT,HOST:PORT,... --raft-endpoint HOST:PORT] [--raft-port 0] [--advertise http://HOST:PORT] [--advertise-http http://HOST:PORT] [--election-timeout 500ms] [--snapshot-every 10000]\n" +
        "       [--dead-after 60 (seconds, or 90s/2m)] [--max-rebuilds 12] [--tls-ca CA.crt --tls-cert master.crt --tls-key master.key]\n" +
        "       [--backup-target s3://BUCKET[/PREFIX] --backup-endpoint URL [--backup-region us-east-1]] (listed by the web console; credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)";

    public static MasterOptions Parse(IReadOnlyList<string> args)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < args.Count; i++)
        {
            var name = args[i];
            if (!name.StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Count)
            {
                throw new ArgumentException($"unexpected argument '{name}'");
            }
            values[name[2..]] = args[++i];
        }
        var known = new[] { "data", "listen", "port", "http-port", "chunk-size", "replicas", "heartbeat-timeout",
            "peers", "raft-endpoint", "raft-port", "advertise", "advertise-http", "election-timeout", "snapshot-every",
            "dead-after", "max-rebuilds", "tls-ca", "tls-cert", "tls-key", "backup-target", "backup-endpoint", "backup-region" };
        var unknown = values.Keys.FirstOrDefault(k => !known.Contains(k));
        if (unknown is not null)
        {
            throw new ArgumentException($"unknown option --{unknown}");
        }
        if (!values.TryGetValue("data", out var data))
        {
            throw new ArgumentException("--data DIR is required");
        }
        var options = new MasterOptions
        {
            DataDirectory = Path.GetFullPath(data),
            ListenAddress = values.GetValueOrDefault("listen", "127.0.0.1"),
            GrpcPort = ParseInt(values, "port", 0),
            HttpPort = ParseInt(values, "http-port", 0),
            ChunkSizeBytes = values.TryGetValue("chunk-size", out var size) ? ParseSize(size) : 64UL * 1024 * 1024,
            DefaultReplicas = ParseInt(values, "replicas", 3),
            HeartbeatTimeout = values.TryGetValue("heartbeat-timeout", out var timeout) ? ParseDuration(timeout) : TimeSpan.FromSeconds(5),
            RaftPeers = values.TryGetValue("peers", out var peers)
                ? peers.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                : [],
            RaftEndpoint = values.GetValueOrDefault("raft-endpoint"),
            RaftPort = ParseInt(values, "raft-port", 0),
            AdvertiseAddress = values.GetValueOrDefault("advertise"),
            AdvertiseHttpAddress = values.GetValueOrDefault("advertise-http"),
            ElectionTimeout = values.TryGetValue("election-timeout", out var election) ? ParseDuration(election) : TimeSpan.FromMilliseconds(500),
            SnapshotEveryCommands = ParseInt(values, "snapshot-every", 10_000),
            DeadAfter = values.TryGetValue("dead-after", out var deadAfter) ? ParseSeconds(deadAfter, "dead-after") : TimeSpan.FromSeconds(60),
            MaxRebuilds = ParseInt(values, "max-rebuilds", MasterOptions.DefaultMaxRebuilds),
            Tls = LoadTls(values),
            BackupTarget = Web.ConsoleBackupTarget.FromOptions(values.GetValueOrDefault("backup-target"),
                values.GetValueOrDefault("backup-endpoint"), values.GetValueOrDefault("backup-region")),
        };
        if (options.RaftPeers.Count > 0)
        {
            // Checks the endpoints and that this master is one of them.
            Raft.RaftPeers.Parse(options.RaftPeers, options.RaftEndpoint ?? throw new ArgumentException("--raft-endpoint HOST:PORT is required with --peers"));
        }
        if (!System.Net.IPAddress.TryParse(options.ListenAddress, out _))
        {
            throw new ArgumentException($"--listen '{options.ListenAddress}' is not an IP address");
        }
        options.Validate();
        return options;
    }

    /// <summary>The master's certificate (role master) and CA from --tls-*; null without them.</summary>
    private static Core.Security.ComponentTls? LoadTls(Dictionary<string, string> values) =>
        Core.Security.ComponentTls.FromFlags(values.GetValueOrDefault("tls-ca"), values.GetValueOrDefault("tls-cert"), values.GetValueOrDefault("tls-key"),
            Core.Security.ComponentRoles.Master);

    private static int ParseInt(Dictionary<string, string> values, string name, int fallback) =>
        !values.TryGetValue(name, out var text) ? fallback
        : int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) ? value
        : throw new ArgumentException($"--{name} '{text}' is not a number");

    /// <summary>A positive size such as 4096, 64MiB or 1GiB (<see cref="ByteSize"/>).</summary>
    public static ulong ParseSize(string text) =>
        ByteSize.TryParse(text, out var bytes) && bytes > 0
            ? (ulong)bytes
            : throw new ArgumentException($"size '{text}' is not a positive size such as 64MiB");

    /// <summary>Plain seconds (60, 2.5) or a duration (90s, 500ms, 2m).</summary>
    public static TimeSpan ParseSeconds(string text, string name)
    {
        if (double.TryParse(text, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var seconds))
        {
            return seconds > 0 ? TimeSpan.FromSeconds(seconds) : throw new ArgumentException($"--{name} '{text}' must be positive");
        }
        try
        {
            return ParseDuration(text);
        }
        catch (ArgumentException)
        {
            throw new ArgumentException($"--{name} '{text}' is not a number of seconds or a duration such as 90s");
        }
    }

    /// <summary>Durations such as 5s, 500ms, 2m.</summary>
    public static TimeSpan ParseDuration(string text)
    {
        var units = new (string Suffix, double Seconds)[] { ("ms", 0.001), ("s", 1), ("m", 60) };
        foreach (var (suffix, seconds) in units)
        {
            if (text.EndsWith(suffix, StringComparison.Ordinal)
                && double.TryParse(text[..^suffix.Length], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var n) && n > 0)
            {
                return TimeSpan.FromSeconds(n * seconds);
            }
        }
        throw new ArgumentException($"duration '{text}' is not a positive duration such as 5s or 500ms");
    }
}
