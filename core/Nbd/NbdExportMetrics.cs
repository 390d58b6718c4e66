using Prometheus;

namespace FeitianK8s.Core.Nbd;

/// <summary>
/// The labelled children of <see cref="NbdMetrics"/> for one export, looked up once per connection
/// instead of once per request (a label lookup hashes and compares the label strings).
/// </summary>
internal sealed class NbdExportMetrics
{
    private readonly Counter.Child?[] _requests;
    private readonly Histogram.Child?[] _durations;

    public NbdExportMetrics(string export)
    {
        Export = export;
        ReadBytes = NbdMetrics.ReadBytes.WithLabels(export);
        WrittenBytes = NbdMetrics.WrittenBytes.WithLabels(export);
        var slots = Enum.GetValues<NbdCommand>().Max(c => (int)c) + 1;
        _requests = new Counter.Child[slots];
        _durations = new Histogram.Child[slots];
    }

    public string Export { get; }

    public Counter.Child ReadBytes { get; }

    public Counter.Child WrittenBytes { get; }

    /// <summary>Created on first use, so only commands a client sent appear in the exposition (as before).</summary>
    public Counter.Child Requests(NbdCommand command) => (int)command < _requests.Length
        ? _requests[(int)command] ??= NbdMetrics.Requests.WithLabels(Export, NbdMetrics.CommandLabel(command))
        : NbdMetrics.Requests.WithLabels(Export, NbdMetrics.CommandLabel(command));

    public Histogram.Child Duration(NbdCommand command) => (int)command < _durations.Length
        ? _durations[(int)command] ??= NbdMetrics.RequestDuration.WithLabels(NbdMetrics.CommandLabel(command))
        : NbdMetrics.RequestDuration.WithLabels(NbdMetrics.CommandLabel(command));
}
