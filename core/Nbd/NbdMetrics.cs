using Prometheus;

namespace FeitianK8s.Core.Nbd;

/// <summary>Prometheus metrics of the NBD frontend (feitian_nbd_*), labelled by export where useful.</summary>
internal static class NbdMetrics
{
    public static readonly Counter Connections = Metrics.CreateCounter(
        "feitian_nbd_connections_total", "NBD connections accepted.");

    public static readonly Gauge ActiveConnections = Metrics.CreateGauge(
        "feitian_nbd_active_connections", "NBD connections currently open.");

    public static readonly Counter ProtocolErrors = Metrics.CreateCounter(
        "feitian_nbd_protocol_errors_total", "NBD connections closed for a protocol violation.");

    public static readonly Counter Requests = Metrics.CreateCounter(
        "feitian_nbd_requests_total", "NBD requests answered, by command.",
        new CounterConfiguration { LabelNames = ["export", "command"] });

    public static readonly Counter RequestErrors = Metrics.CreateCounter(
        "feitian_nbd_request_errors_total", "NBD requests answered with an error, by command and error.",
        new CounterConfiguration { LabelNames = ["export", "command", "error"] });

    public static readonly Histogram RequestDuration = Metrics.CreateHistogram(
        "feitian_nbd_request_duration_seconds", "Time from a request's arrival to its reply, by command.",
        new HistogramConfiguration { LabelNames = ["command"], Buckets = Histogram.ExponentialBuckets(0.00005, 2, 18) });

    public static readonly Counter ReadBytes = Metrics.CreateCounter(
        "feitian_nbd_read_bytes_total", "Bytes returned by NBD reads.", new CounterConfiguration { LabelNames = ["export"] });

    public static readonly Counter WrittenBytes = Metrics.CreateCounter(
        "feitian_nbd_written_bytes_total", "Bytes accepted by NBD writes.", new CounterConfiguration { LabelNames = ["export"] });

    public static readonly Gauge InFlightRequests = Metrics.CreateGauge(
        "feitian_nbd_inflight_requests", "NBD requests being processed.");

    public static string CommandLabel(NbdCommand command) => command switch
    {
        NbdCommand.Read => "read",
        NbdCommand.Write => "write",
        NbdCommand.Flush => "flush",
        NbdCommand.Trim => "trim",
        NbdCommand.WriteZeroes => "write_zeroes",
        NbdCommand.Disconnect => "disc",
        _ => "unknown",
    };

    public static string ErrorLabel(NbdError error) => error switch
    {
        NbdError.Perm => "EPERM",
        NbdError.Io => "EIO",
        NbdError.NoMem => "ENOMEM",
        NbdError.Inval => "EINVAL",
        NbdError.NoSpc => "ENOSPC",
        NbdError.Overflow => "EOVERFLOW",
        NbdError.NotSup => "ENOTSUP",
        NbdError.Shutdown => "ESHUTDOWN",
        _ => "other",
    };
}
