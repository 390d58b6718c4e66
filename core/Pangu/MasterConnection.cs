using FeitianK8s.Core.Common;
using FeitianK8s.Proto.Master;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Pangu;

/// <summary>
/// Calls the master and rides out master outages: a master outage is a pause, never an error.
/// A call that finds no master answering (<see cref="IsMasterOutage"/>: unreachable, timed out,
/// not the leader, still waiting for its chunk servers to report) is retried with backoff up to
/// <see cref="PanguClientOptions.MasterUnavailableRetry"/> (the `--master-wait` flag). A follower's
/// refusal naming the leader (trailer feitian-leader) switches to that leader at once; otherwise
/// the next configured address is tried. Any other error is returned to the caller at once as the
/// <see cref="RpcException"/> the master sent.
/// </summary>
public sealed class MasterConnection
{
    private static readonly TimeSpan FirstBackoff = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan MinAttemptTimeout = TimeSpan.FromSeconds(1);

    private readonly PanguClientOptions _options;
    private readonly GrpcChannelCache _channels;
    private readonly ILogger _logger;
    private readonly object _gate = new();
    private readonly List<string> _addresses;
    private string _current;
    private readonly RequestIds _requestIds = new();

    public MasterConnection(PanguClientOptions options, GrpcChannelCache channels, ILogger logger)
    {
        if (options.MasterAddresses.Count == 0)
        {
            throw new ArgumentException("PanguClientOptions.MasterAddresses is empty", nameof(options));
        }
        _options = options;
        _channels = channels;
        _logger = logger;
        _addresses = [.. options.MasterAddresses];
        _current = _addresses[0];
    }

    /// <summary>The master the next call goes to (the leader, once one named itself).</summary>
    public string CurrentAddress
    {
        get
        {
            lock (_gate)
            {
                return _current;
            }
        }
    }

    /// <summary>
    /// True when the error means "no master can answer right now" and the call should wait and
    /// retry: Unavailable (unreachable, restarting, not the leader, chunk servers still reporting)
    /// or DeadlineExceeded (a master that stopped answering). Fenced/stale epoch, invalid
    /// argument, not found and the like are real answers and fail at once.
    /// </summary>
    public static bool IsMasterOutage(RpcException e) => e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded;

    public async Task<T> CallAsync<T>(string operation, Func<Master.MasterClient, CallOptions, Task<T>> call, CancellationToken ct)
    {
        var started = DateTime.UtcNow;
        var giveUpAt = started + _options.MasterUnavailableRetry;
        var backoff = FirstBackoff;
        // One request id for every attempt: a retry of a mutation the master applied already is answered, not applied again.
        var headers = _requestIds.Next();
        for (var attempt = 1; ; attempt++)
        {
            var address = CurrentAddress;
            var client = new Master.MasterClient(_channels.Get(address));
            // After the first attempt, one attempt never outlives the wait by much: a master that hangs
            // (SIGSTOP) costs at most the rest of the wait. The first always gets the full timeout.
            var remaining = giveUpAt - DateTime.UtcNow;
            var timeout = attempt == 1 || remaining >= _options.MasterTimeout ? _options.MasterTimeout
                : remaining > MinAttemptTimeout ? remaining : MinAttemptTimeout;
            try
            {
                var result = await call(client, new CallOptions(headers, DateTime.UtcNow + timeout, ct));
                if (attempt > 1)
                {
                    _logger.LogInformation("master {Address} answered {Operation} after {Attempts} attempts ({Seconds:F1} s)",
                        address, operation, attempt, (DateTime.UtcNow - started).TotalSeconds);
                }
                return result;
            }
            catch (RpcException e) when (IsMasterOutage(e) && !ct.IsCancellationRequested)
            {
                var leader = FeitianStatus.HasReason(e, ErrorReasons.NotLeader) ? FeitianStatus.LeaderOf(e) : null;
                var followed = Switch(address, leader);
                if (DateTime.UtcNow >= giveUpAt)
                {
                    _logger.LogWarning("no master answered {Operation} within {Wait} ({Attempts} attempts, last {Address}: {Code} {Reason})",
                        operation, _options.MasterUnavailableRetry, attempt, address, e.StatusCode, FeitianStatus.ReasonOf(e));
                    throw;
                }
                if (attempt % 10 == 1)
                {
                    _logger.LogWarning("master {Address} did not serve {Operation} ({Code} {Reason}, attempt {Attempt}); waiting and retrying",
                        address, operation, e.StatusCode, FeitianStatus.ReasonOf(e), attempt);
                }
                if (followed)
                {
                    // The leader named itself: go there at once, but back off if leaders keep pointing around.
                    if (attempt > 3)
                    {
                        await Task.Delay(backoff, ct);
                    }
                    continue;
                }
                await Task.Delay(backoff + TimeSpan.FromMilliseconds(Random.Shared.Next(0, 20)), ct);
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
            }
        }
    }

    /// <summary>After a failed call to <paramref name="failed"/>: follow the named leader, else rotate to the next address. True when a leader was followed.</summary>
    private bool Switch(string failed, string? leader)
    {
        lock (_gate)
        {
            if (leader is not null && leader != failed)
            {
                if (!_addresses.Contains(leader, StringComparer.Ordinal))
                {
                    _addresses.Add(leader);
                }
                _current = leader;
                _logger.LogInformation("master {Address} is not the leader; following leader {Leader}", failed, leader);
                return true;
            }
            if (_current == failed)
            {
                var index = _addresses.IndexOf(failed);
                _current = _addresses[(index + 1) % _addresses.Count];
            }
            return false;
        }
    }
}
